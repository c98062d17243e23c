"""What happens to a work item: start (claim, then the agent's argv), finalize
(record -> verdict -> receipt -> policy -> one write), the verdict table, the
breaker, the gate before a claim, reconcile after a crash."""
