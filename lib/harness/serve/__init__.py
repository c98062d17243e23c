"""The loop's helper coprocess (helper.py): one long-lived process answering the
loop's calls in one reply format (reply.py); the calls only bash makes (loopcalls.py)."""
