"""The plan a planning session answers with, its JSON schema, and its validation.

The CLI gets SCHEMA through --json-schema and holds the model to it; check() holds
every answer to it again (a plan file written by a person, a CLI that checked
less) and to what a schema cannot say: ids unique, dependencies known, no cycle.
A refused plan is one line naming what is wrong, and nothing is queued.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.plan.errors import PlanError
from harness.store import queue

MAX_ITEMS = 100
MAX_SIZE = 13
PLAN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MAX_TITLE_CHARS = 200
MAX_FILES = 200
MAX_PATH_CHARS = 1024
MAX_SUMMARY_CHARS = 20_000
ITEM_FIELDS = ("id", "title", "prompt", "files", "size", "depends_on", "verify")
REQUIRED_FIELDS = ("id", "title", "prompt", "files", "size", "depends_on")
PLAN_FIELDS = ("summary", "items", "goal")  # goal: kept in a saved plan file, never asked of the model

_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "items"],
    "properties": {
        "summary": {"type": "string", "description": "the approach in a few sentences"},
        "items": {"type": "array", "minItems": 1, "maxItems": MAX_ITEMS, "items": {
            "type": "object",
            "additionalProperties": False,
            "required": list(REQUIRED_FIELDS),
            "properties": {
                "id": {"type": "string", "pattern": PLAN_ID_RE.pattern},
                "title": {"type": "string", "minLength": 1, "maxLength": MAX_TITLE_CHARS},
                "prompt": {"type": "string", "minLength": 1},
                "files": {**_STRINGS, "description": "repository-relative paths (or directories) it expects to touch"},
                "size": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE,
                         "description": "relative effort in points: 1 trivial, 3 a small change, 8 a large one"},
                "depends_on": {**_STRINGS, "description": "ids of items that must be done first"},
                "verify": {"type": "string", "description": "a shell command that exits 0 when the item is done"},
            },
        }},
    },
}


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    prompt: str
    files: tuple[str, ...]
    size: int
    depends_on: tuple[str, ...]
    verify: str = ""


@dataclass(frozen=True)
class Plan:
    summary: str
    items: tuple[Item, ...]
    goal: str = ""

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary, "items": [_item_dict(i) for i in self.items]}
        if self.goal:
            out["goal"] = self.goal
        return out


def _item_dict(i: Item) -> dict[str, Any]:
    d: dict[str, Any] = {"id": i.id, "title": i.title, "prompt": i.prompt, "files": list(i.files), "size": i.size,
                         "depends_on": list(i.depends_on)}
    if i.verify:
        d["verify"] = i.verify
    return d


def _string(where: str, value: Any, limit: int, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise PlanError(f"{where} must be a string, got {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise PlanError(f"{where} is empty")
    if len(value) > limit:
        raise PlanError(f"{where} is longer than {limit} characters")
    if "\0" in value:
        raise PlanError(f"{where} holds a NUL byte")
    return value


def _strings(where: str, value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        raise PlanError(f"{where} must be a list of strings")
    if len(value) > limit:
        raise PlanError(f"{where} has more than {limit} entries")
    return [_string(f"{where}[{n}]", v, MAX_PATH_CHARS) for n, v in enumerate(value)]


def _repo_path(where: str, path: str, repo: Path | None) -> str:
    """A path as the repository knows it: relative, POSIX, normalized; never outside."""
    p = path.strip()
    if p.startswith("/") and repo is not None:
        try:
            p = Path(p).relative_to(repo.resolve()).as_posix()
        except ValueError:
            raise PlanError(f"{where}: {path!r} is outside the repository") from None
    p = posixpath.normpath(p.lstrip("/")) if p else p
    if p in ("", ".") and path.strip() not in (".", "./"):
        raise PlanError(f"{where} is empty")
    if p == ".." or p.startswith("../"):
        raise PlanError(f"{where}: {path!r} is outside the repository")
    return p


def _size(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIZE:
        raise PlanError(f"{where} must be a whole number from 1 to {MAX_SIZE}, got {value!r}")
    return value


def _item(n: int, raw: Any, repo: Path | None) -> Item:
    where = f"item {n}"
    if not isinstance(raw, dict):
        raise PlanError(f"{where} must be an object")
    if isinstance(raw.get("id"), str) and PLAN_ID_RE.match(raw["id"]):
        where = f"item {n} ({raw['id']})"
    unknown = [k for k in raw if k not in ITEM_FIELDS]
    if unknown:
        raise PlanError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(ITEM_FIELDS)})")
    missing = [k for k in REQUIRED_FIELDS if k not in raw]
    if missing:
        raise PlanError(f"{where}: missing {', '.join(missing)}")
    item_id = raw["id"]
    if not isinstance(item_id, str) or not PLAN_ID_RE.match(item_id):
        raise PlanError(f"{where}: invalid id {item_id!r}: 1-32 of A-Z a-z 0-9 . _ - starting with a letter or digit")
    prompt = _string(f"{where} prompt", raw["prompt"], queue.MAX_PROMPT_BYTES)
    if len(prompt.encode("utf-8", "surrogatepass")) > queue.MAX_PROMPT_BYTES:
        raise PlanError(f"{where} prompt is over {queue.MAX_PROMPT_BYTES} bytes")
    files = [_repo_path(f"{where} files[{k}]", f, repo) for k, f in enumerate(_strings(f"{where} files", raw["files"],
                                                                                          MAX_FILES))]
    return Item(
        id=item_id, title=_string(f"{where} title", raw["title"], MAX_TITLE_CHARS).strip(), prompt=prompt,
        files=tuple(dict.fromkeys(files)), size=_size(f"{where} size", raw["size"]),
        depends_on=tuple(dict.fromkeys(_strings(f"{where} depends_on", raw["depends_on"], MAX_ITEMS))),
        verify=_string(f"{where} verify", raw.get("verify", ""), queue.MAX_VERIFY_CHARS, empty_ok=True).strip(),
    )


def check(raw: Any, repo: Path | None = None) -> Plan:
    """The plan, checked whole: its shape, each item, then ids, dependencies and cycles."""
    if not isinstance(raw, dict):
        raise PlanError("the plan must be a JSON object with an items list")
    unknown = [k for k in raw if k not in PLAN_FIELDS]
    if unknown:
        raise PlanError(f"unknown field {unknown[0]!r} in the plan (known: {', '.join(PLAN_FIELDS)})")
    items_raw = raw.get("items")
    if not isinstance(items_raw, list) or not items_raw:
        raise PlanError("the plan has no items (a non-empty list is required)")
    if len(items_raw) > MAX_ITEMS:
        raise PlanError(f"the plan has {len(items_raw)} items; at most {MAX_ITEMS}")
    items = [_item(n, r, repo) for n, r in enumerate(items_raw, 1)]
    _check_ids(items)
    return Plan(summary=_string("summary", raw.get("summary", ""), MAX_SUMMARY_CHARS, empty_ok=True).strip(),
                items=tuple(items), goal=_string("goal", raw.get("goal", ""), 10 * 1024 * 1024, empty_ok=True))


def _check_ids(items: list[Item]) -> None:
    seen: set[str] = set()
    for i in items:
        if i.id in seen:
            raise PlanError(f"duplicate item id {i.id}")
        seen.add(i.id)
    bad = [f"{i.id} depends on unknown item {d}" for i in items for d in i.depends_on if d not in seen]
    if bad:
        raise PlanError("the plan names unknown dependencies: " + "; ".join(bad))
    cycle = find_cycle({i.id: list(i.depends_on) for i in items})
    if cycle:
        raise PlanError("the plan has a dependency cycle: " + " -> ".join(cycle))


def find_cycle(deps: dict[str, list[str]]) -> list[str]:
    """One cycle of the dependency graph as a closed path (a -> b -> a), or []."""
    state: dict[str, int] = {}
    for start in deps:
        if start in state:
            continue
        path = [start]
        work = [iter(deps[start])]
        state[start] = 1
        while work:
            nxt = next(work[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                work.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                work.append(iter(deps.get(nxt, ())))
    return []
