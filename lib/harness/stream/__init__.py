"""A session's stream, agent-neutral: normalized events (events.py), the one walker
of tool calls (calls.py), the facts a verdict and a receipt need (facts.py), and
reading the file: line by line (jsonl.py), fast (fastscan.py), following it as it
grows (tailer.py, waker.py), and the sidecar's timeline read back (timeline.py)."""
