"""A plan queued as a run: one store call, so the plan is queued whole or not at all.

Each item becomes a queue item `<run>.<id>` (ids of different plans never clash),
in the run, with its dependencies (the plan's and the ones the imports added), the
priority the critical path gives it, and its verify command. The files it expects to
touch are named at the end of its prompt: the queue keeps no such field, and the
agent that does the work is helped by knowing them.
"""

from __future__ import annotations

import time
from typing import Any

from harness.plan.errors import PlanError
from harness.plan.order import Ordered
from harness.store import Store, queue


def default_run_name(now: float) -> str:
    return "plan-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))


def queue_ids(o: Ordered, run: str) -> dict[str, str]:
    """Each plan id to its queue id; refused when one would be over the queue's limit."""
    out = {i.id: f"{run}.{i.id}" for i in o.plan.items}
    for item_id, qid in out.items():
        try:
            queue.check_id(qid)
        except queue.QueueError:
            raise PlanError(f"item {item_id}: its queue id {qid} is over 64 characters: "
                            f"choose a shorter run name (--run)") from None
    return out


def _prompt(prompt: str, files: tuple[str, ...]) -> str:
    if not files:
        return prompt
    return prompt.rstrip("\n") + "\n\n(From the plan: this work is expected to touch " + ", ".join(files) + ".)\n"


def entries(o: Ordered, run: str) -> list[tuple[str, dict[str, Any]]]:
    ids = queue_ids(o, run)
    out: list[tuple[str, dict[str, Any]]] = []
    for item in o.plan.items:
        raw: dict[str, Any] = {"id": ids[item.id], "title": item.title, "prompt": _prompt(item.prompt, item.files),
                               "priority": o.priority(item.id), "depends_on": [ids[d] for d in o.depends_on[item.id]],
                               "run": run}
        if item.verify:
            raw["verify"] = item.verify
        out.append((f"plan item {item.id}", raw))
    return out


def apply(store: Store, o: Ordered, run: str) -> list[str]:
    """Queues the plan as run `run`, which must be new; returns the queue ids."""
    run = queue.check_run(run)
    batch = entries(o, run)
    if any(i.get("run") == run for i in store.items(list(queue.STATES))):
        raise PlanError(f"run {run} exists already: choose another name (--run)")
    return store.add(batch)
