"""Running the harness for months: the first-run check (doctor.py)."""
