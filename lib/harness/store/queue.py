"""The work queue on disk: one JSON file per item, one directory per state.

Every write is a temp file + rename; a claim is one rename from pending/ to
running/, so exactly one claimer wins. Mutations made by people (add, cancel,
retry) hold queue/.lock; the loop's claim needs no lock.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import jsonio

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PRIORITIES = ("critical", "high", "normal", "low")
# verified: proven work that waits for the merge queue (INTEGRATE); it succeeds once landed
STATES = ("pending", "running", "verified", "succeeded", "quarantined", "canceled")
TERMINAL_STATES = ("succeeded", "quarantined", "canceled")
# The Claude Code CLI refuses piped stdin above 10 MiB ("piped stdin input exceeds 10MB").
MAX_PROMPT_BYTES = 10 * 1024 * 1024
MAX_TITLE_CHARS = 1000
MAX_VERIFY_CHARS = 64 * 1024
INPUT_FIELDS = (
    "id",
    "title",
    "prompt",
    "priority",
    "depends_on",
    "created_at",
    "max_turns",
    "max_budget_usd",
    "timeout_s",
    "stall_timeout_s",
    "tool_timeout_s",
    "model",
    "allowed_tools",
    "max_attempts",
    "verify",
    "verify_timeout_s",
    "run",
)
HARNESS_FIELDS = ("attempts", "state", "history", "not_before", "lease", "updated_at", "last_verdict", "last_reason",
                  "fix", "fix_rounds")


class QueueError(Exception):
    """A refused operation; the message is one line for a person."""


@dataclass
class Queue:
    state_dir: Path

    @property
    def root(self) -> Path:
        return self.state_dir / "queue"

    def dir(self, state: str) -> Path:
        return self.root / state

    def path(self, state: str, item_id: str) -> Path:
        return self.dir(state) / f"{item_id}.json"

    def init(self) -> None:
        for state in STATES:
            self.dir(state).mkdir(mode=0o700, parents=True, exist_ok=True)

    def ids(self, state: str) -> list[str]:
        try:
            names = os.listdir(self.dir(state))
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    def all_states(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for state in STATES:
            for item_id in self.ids(state):
                found[item_id] = state
        return found

    def find(self, item_id: str) -> tuple[str, Path]:
        check_id(item_id)
        for state in STATES:
            p = self.path(state, item_id)
            if p.exists():
                return state, p
        raise QueueError(f"unknown item id: {item_id}")

    def load(self, state: str, item_id: str) -> dict[str, Any]:
        return jsonio.read_json(self.path(state, item_id))  # type: ignore[no-any-return]

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.init()
        fd = os.open(self.root / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def audit(self, event: str, **fields: Any) -> None:
        jsonio.audit(self.state_dir, event, **fields)


def check_id(item_id: str) -> str:
    if not isinstance(item_id, str) or not ID_RE.match(item_id):
        raise QueueError(f"invalid item id {item_id!r}: use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    return item_id


def new_id() -> str:
    return "item-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + f"-{random.getrandbits(24):06x}"


def _pos_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueueError(f"{name} must be a whole number above 0, got {value!r}")
    return value


def _pos_num(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise QueueError(f"{name} must be a number above 0, got {value!r}")
    return value


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise QueueError(f"{name} must be a string")
    if len(value) > limit:
        raise QueueError(f"{name} is longer than {limit} characters")
    return value


def _checked_prompt(raw: dict[str, Any]) -> str:
    for key in raw:
        if key in HARNESS_FIELDS:
            raise QueueError(f"field {key!r} is kept by the harness and cannot be given")
        if key not in INPUT_FIELDS:
            raise QueueError(f"unknown field {key!r} (known: {', '.join(INPUT_FIELDS)})")
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise QueueError("prompt is required and must be a non-empty string")
    size = len(prompt.encode("utf-8", "surrogatepass"))
    if size > MAX_PROMPT_BYTES:
        raise QueueError(
            f"prompt is {size} bytes; the Claude Code CLI takes at most {MAX_PROMPT_BYTES} (10 MiB) "
            "on stdin: put large content in a file and name it in the prompt"
        )
    return prompt


def _checked_deps(raw: dict[str, Any], item_id: str) -> list[str]:
    deps = raw.get("depends_on") or []
    if isinstance(deps, str):
        deps = [d for d in re.split(r"[,\s]+", deps) if d]
    if not isinstance(deps, list):
        raise QueueError("depends_on must be a list of item ids")
    deps = [check_id(d) for d in deps]
    if item_id in deps:
        raise QueueError(f"item {item_id} cannot depend on itself")
    return list(dict.fromkeys(deps))


def _limits(raw: dict[str, Any]) -> dict[str, Any]:
    """The item's own limits, checked: they win over the configuration's."""
    out: dict[str, Any] = {}
    for key in ("max_turns", "max_attempts"):
        if raw.get(key) is not None:
            out[key] = _pos_int(key, raw[key])
    for key in ("max_budget_usd", "timeout_s", "stall_timeout_s", "tool_timeout_s", "verify_timeout_s"):
        if raw.get(key) is not None:
            out[key] = _pos_num(key, raw[key])
    if raw.get("model") not in (None, ""):
        out["model"] = _text("model", raw["model"], 200)
    if raw.get("verify") not in (None, ""):
        out["verify"] = _text("verify", raw["verify"], MAX_VERIFY_CHARS)
        if "\0" in out["verify"]:
            raise QueueError("verify must not hold a NUL byte")
    tools = raw.get("allowed_tools")
    if tools not in (None, "", []):
        if isinstance(tools, list):
            tools = ",".join(_text("allowed_tools", t, 200) for t in tools)
        out["allowed_tools"] = _text("allowed_tools", tools, 4000)
    if raw.get("run") not in (None, ""):
        out["run"] = check_run(raw["run"])
    return out


def check_run(name: Any) -> str:
    """A run's name: the rules of an item id."""
    if not isinstance(name, str) or not ID_RE.match(name):
        raise QueueError(f"invalid run name {name!r}: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit")
    return name


def normalize(raw: Any, now_iso: str) -> dict[str, Any]:
    """Checks one item as a person wrote it and returns it as the queue stores it."""
    if not isinstance(raw, dict):
        raise QueueError("an item must be a JSON object")
    prompt = _checked_prompt(raw)
    item_id = raw.get("id")
    item_id = new_id() if item_id in (None, "") else check_id(item_id)
    title = raw.get("title")
    if title in (None, ""):
        title = prompt.strip().splitlines()[0][:80]
    priority = raw.get("priority", "normal") or "normal"
    if priority not in PRIORITIES:
        raise QueueError(f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    created_at = raw.get("created_at") or now_iso
    try:
        jsonio.parse_iso(_text("created_at", created_at, 64))
    except ValueError:
        raise QueueError(f"created_at must be an ISO 8601 time, got {created_at!r}") from None
    return {
        "id": item_id, "title": _text("title", title, MAX_TITLE_CHARS), "prompt": prompt, "priority": priority,
        "depends_on": _checked_deps(raw, item_id), "created_at": created_at, "attempts": 0, "not_before": None,
        "history": [], **_limits(raw),
    }


def parse_items(data: bytes, label: str) -> list[tuple[str, Any]]:
    """One JSON object, a JSON array of objects, or JSON lines. Returns (where, object)."""
    stripped = data.strip()
    if not stripped:
        raise QueueError(f"{label}: no items")
    try:
        whole = jsonio.loads(stripped)
    except ValueError:
        whole = None
    else:
        if isinstance(whole, list):
            return [(f"{label} item {i + 1}", obj) for i, obj in enumerate(whole)]
        return [(label, whole)]
    out: list[tuple[str, Any]] = []
    for n, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{label} line {n}", jsonio.loads(line)))
        except ValueError as exc:
            raise QueueError(f"{label} line {n}: malformed JSON ({exc})") from None
    return out


def _check_cycles(batch: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in batch[node]["depends_on"]:
            if dep not in batch:
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [node, dep]
                raise QueueError("dependency cycle: " + " -> ".join(cycle))
            if state.get(dep) is None:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in batch:
        if node not in state:
            visit(node, [node])


def add(queue: Queue, entries: list[tuple[str, Any]]) -> list[str]:
    """Validates every entry first; writes them only when all are good."""
    now = jsonio.utc_now_iso()
    with queue.locked():
        existing = queue.all_states()
        batch: dict[str, dict[str, Any]] = {}
        for where, raw in entries:
            try:
                item = normalize(raw, now)
            except QueueError as exc:
                raise QueueError(f"{where}: {exc}") from None
            if item["id"] in existing:
                raise QueueError(f"{where}: duplicate id {item['id']} (already {existing[item['id']]})")
            if item["id"] in batch:
                raise QueueError(f"{where}: duplicate id {item['id']} (twice in this input)")
            batch[item["id"]] = item
        for item in batch.values():
            for dep in item["depends_on"]:
                if dep not in existing and dep not in batch:
                    raise QueueError(f"item {item['id']}: depends on unknown id {dep}")
        _check_cycles(batch)
        for item in batch.values():
            item["state"] = "pending"
            item["updated_at"] = now
            jsonio.write_json(queue.path("pending", item["id"]), item, pretty=False)
            queue.audit(
                "item.added",
                item=item["id"],
                to="pending",
                priority=item["priority"],
                prompt_bytes=len(item["prompt"].encode("utf-8", "surrogatepass")),
            )
    return list(batch)


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return jsonio.parse_iso(text).timestamp()
    except ValueError:
        return 0.0


@dataclass
class Candidate:
    item_id: str
    rank: int  # priority index, 0 (critical) to 3 (low)
    created: float
    not_before: float
    depends_on: list[str]
    fixing: bool = False  # waits for a fix round: goes before new work
    run: str | None = None  # the run it belongs to (a run over its budget is skipped)

    def effective_rank(self, now: float, aging_s: float) -> int:
        """One level up for each aging_s waited, so that old low-priority work is not starved."""
        if aging_s <= 0:
            return self.rank
        return max(0, self.rank - int(max(0.0, now - self.created) // aging_s))


def candidates(queue: Queue, now: float = 0.0, aging_s: float = 0.0) -> tuple[list[Candidate], list[str]]:
    """Pending items in claim order (fix rounds, then priority with aging, then age, then id), and
    the names of files that would not parse."""
    found: list[Candidate] = []
    bad: list[str] = []
    for item_id in queue.ids("pending"):
        try:
            item = queue.load("pending", item_id)
        except FileNotFoundError:
            continue
        except (ValueError, OSError):
            bad.append(item_id)
            continue
        if not isinstance(item, dict):
            bad.append(item_id)
            continue
        rank = PRIORITIES.index(item.get("priority")) if item.get("priority") in PRIORITIES else 2
        found.append(
            Candidate(
                item_id, rank, _epoch(item.get("created_at")), _epoch(item.get("not_before")),
                list(item.get("depends_on") or []), bool(item.get("fix")),
                str(item["run"]) if item.get("run") else None,
            )
        )
    # fix rounds first (work that is nearly done), then priority with aging, age, id
    found.sort(key=lambda c: (not c.fixing, c.effective_rank(now, aging_s), c.created, c.item_id))
    return found, bad


def blocked_reason(depends_on: list[str], states: dict[str, str]) -> str | None:
    """Why an item can never run as things stand: a dependency quarantined, canceled or gone."""
    reasons = []
    for dep in depends_on:
        state = states.get(dep)
        if state in ("quarantined", "canceled"):
            reasons.append(f"{dep}, which is {state}")
        elif state is None:
            reasons.append(f"{dep}, which does not exist")
    return "depends on " + ", ".join(reasons) if reasons else None


def ready(queue: Queue, now: float, aging_s: float = 0.0) -> list[str]:
    done = set(queue.ids("succeeded"))
    cands, _ = candidates(queue, now, aging_s)
    return [c.item_id for c in cands if c.not_before <= now and all(d in done for d in c.depends_on)]


def claim(
    queue: Queue, session_id: str, worker: str, now: float, admit: Callable[[], bool] | None = None,
    aging_s: float = 0.0, skip_runs: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """Claims the best ready item for session_id; None when nothing is ready, or
    when admit (asked once an item is ready, before each rename) says no."""
    cands, bad = candidates(queue, now, aging_s)
    for item_id in bad:
        _set_aside(queue, item_id)
    done = set(queue.ids("succeeded"))
    for c in cands:
        if c.not_before > now or not all(d in done for d in c.depends_on) or (c.run and c.run in skip_runs):
            continue
        if admit is not None and not admit():
            return None
        src, dst = queue.path("pending", c.item_id), queue.path("running", c.item_id)
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            continue  # another claimer won, or it was canceled
        item: dict[str, Any] = jsonio.read_json(dst)
        item["state"] = "running"
        # the fencing token: one more than the item's last claim, whatever became of it
        # (a requeue that charges no attempt still moves it on)
        item["claims"] = int(item.get("claims") or 0) + 1
        item["lease"] = {
            "session_id": session_id,
            "token": item["claims"],
            "worker": worker,
            "host": socket.gethostname(),
            "pid": os.getppid(),
            "claimed_at": jsonio.utc_now_iso(),
        }
        item["updated_at"] = item["lease"]["claimed_at"]
        jsonio.write_json(dst, item, pretty=False)
        return item
    return None


def _set_aside(queue: Queue, item_id: str) -> None:
    """An unreadable file in pending/ goes to queue/corrupt/, never lost, never retried."""
    corrupt = queue.root / "corrupt"
    corrupt.mkdir(mode=0o700, exist_ok=True)
    try:
        os.rename(queue.path("pending", item_id), corrupt / f"{item_id}.json")
    except FileNotFoundError:
        return
    queue.audit("item.corrupt", item=item_id, reason="pending file is not a JSON item; moved to queue/corrupt/")


def finish(
    queue: Queue, item_id: str, to_state: str, record: dict[str, Any], attempts: int, not_before: str | None,
    updates: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ends a running item's session: history updated in place, then one rename.
    updates: fields the harness keeps on the item (fix, fix_rounds); None removes one."""
    src = queue.path("running", item_id)
    item: dict[str, Any] = jsonio.read_json(src)
    item["attempts"] = attempts
    item["not_before"] = not_before
    item.pop("lease", None)
    return _move(queue, src, item_id, item, to_state, record, updates)


def moved(item: dict[str, Any], to_state: str, record: dict[str, Any], updates: dict[str, Any] | None) -> dict[str, Any]:
    """The item as it leaves for to_state: its new history record, the fields the
    harness keeps (updates; None removes one), its last verdict and state. Every
    backend's move applies this."""
    for key, value in (updates or {}).items():
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    item.setdefault("history", []).append(record)
    item["last_verdict"] = record.get("verdict")
    item["last_reason"] = record.get("reason")
    item["state"] = to_state
    item["updated_at"] = jsonio.utc_now_iso()
    return item


def _move(queue: Queue, src: Path, item_id: str, item: dict[str, Any], to_state: str, record: dict[str, Any],
          updates: dict[str, Any] | None) -> dict[str, Any]:
    """The item moved (moved()), written in place, then renamed into to_state."""
    moved(item, to_state, record, updates)
    jsonio.write_json(src, item, pretty=False)
    os.rename(src, queue.path(to_state, item_id))
    return item


def settle(queue: Queue, item_id: str, from_state: str, to_state: str, record: dict[str, Any],
           updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """Moves an item that no session holds (a verified one, after its integration) to
    to_state, with a history record; updates as in finish()."""
    with queue.locked():
        src = queue.path(from_state, item_id)
        try:
            item: dict[str, Any] = jsonio.read_json(src)
        except FileNotFoundError:
            raise QueueError(f"item {item_id} is no longer {from_state}") from None
        return _move(queue, src, item_id, item, to_state, record, updates)


def cancel(queue: Queue, item_id: str) -> str:
    """pending, verified or quarantined -> canceled; running -> a cancel request the loop acts on."""
    with queue.locked():
        state, path = queue.find(item_id)
        if state in ("pending", "verified", "quarantined"):
            item: dict[str, Any] = jsonio.read_json(path)
            item["state"] = "canceled"
            item["updated_at"] = jsonio.utc_now_iso()
            jsonio.write_json(path, item, pretty=False)
            os.rename(path, queue.path("canceled", item_id))
            queue.audit("item.canceled", item=item_id, **{"from": state, "to": "canceled"}, reason="canceled by operator")
            return f"canceled {item_id}"
        if state == "running":
            item = jsonio.read_json(path)
            sid = (item.get("lease") or {}).get("session_id")
            if not sid:
                raise QueueError(f"item {item_id} is running but has no session recorded")
            sdir = queue.state_dir / "sessions" / sid
            sdir.mkdir(mode=0o700, parents=True, exist_ok=True)
            jsonio.write_atomic(sdir / "cancel", b"canceled by operator\n")
            queue.audit("item.cancel_requested", item=item_id, session=sid)
            return f"cancel requested for {item_id} (session {sid}); the loop stops it"
        raise QueueError(f"item {item_id} is already {state}")


def retry(queue: Queue, item_id: str) -> str:
    """quarantined or canceled -> pending, with fresh attempt and fix round counts; history kept."""
    with queue.locked():
        state, path = queue.find(item_id)
        if state not in ("quarantined", "canceled"):
            raise QueueError(f"item {item_id} is {state}; only quarantined or canceled items can be retried")
        item: dict[str, Any] = jsonio.read_json(path)
        item["state"] = "pending"
        item["attempts"] = 0
        item["not_before"] = None
        item.pop("fix", None)  # a fresh start: no fix round pending, none used
        item.pop("fix_rounds", None)
        item["updated_at"] = jsonio.utc_now_iso()
        jsonio.write_json(path, item, pretty=False)
        os.rename(path, queue.path("pending", item_id))
        queue.audit("item.retry", item=item_id, **{"from": state, "to": "pending"}, reason="retried by operator")
        return f"{item_id}: {state} -> pending"


def summary_row(item: dict[str, Any], state: str) -> dict[str, Any]:
    """An item as `list` shows it: everything but the prompt, which is measured."""
    row = {k: v for k, v in item.items() if k != "prompt"}
    row["state"] = state
    row["prompt_bytes"] = len(str(item.get("prompt", "")).encode("utf-8", "surrogatepass"))
    return row


def list_items(queue: Queue, states: list[str]) -> list[dict[str, Any]]:
    """Items as `list` shows them; a pending one also says what it waits for, or why it is blocked."""
    rows: list[dict[str, Any]] = []
    every = queue.all_states()
    for state in states:
        for item_id in queue.ids(state):
            try:
                row = summary_row(queue.load(state, item_id), state)
            except FileNotFoundError:
                continue
            except ValueError:
                rows.append({"id": item_id, "state": state, "title": "<unreadable item file>"})
                continue
            if state == "pending":
                deps = list(row.get("depends_on") or [])
                row["blocked"] = blocked_reason(deps, every)
                row["waiting_for"] = [d for d in deps if every.get(d) != "succeeded"]
            rows.append(row)
    order = {s: i for i, s in enumerate(STATES)}
    rows.sort(
        key=lambda r: (
            order.get(r["state"], 9),
            PRIORITIES.index(r["priority"]) if r.get("priority") in PRIORITIES else 9,
            str(r.get("created_at", "")),
            r["id"],
        )
    )
    return rows
