"""What a person reads: finding sessions, the session reports (list, summary,
metrics, tools, errors, timeline, cost), watch, export, status, and their style."""
