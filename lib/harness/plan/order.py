"""A plan ordered by the code: items mapped to files, the dependencies the imports add,
and the critical path.

An item's `files` entry is a file of the graph, a directory (every file under it),
a glob (`app/*.py`), a path without its extension (`web/src/client`, as JavaScript
names it), or a dotted Python module (`app.models`). What matches nothing is a new
file or no code: it adds no edge, and the plan says so.

Item B comes after item A when a file B touches imports one A touches; unless the
plan orders them already, either way (B after A through its dependencies, or A
after B: then the plan's order stands and the import is reported). Two items whose
files import each other both ways are ordered as the plan lists them.

The critical path is the chain of dependent items with the largest total size: the
least the run can take. Its items get priority `high`, the others `normal`.
"""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field
from typing import Any

from harness.plan import files as source_files
from harness.plan import lang_js, lang_python
from harness.plan.errors import PlanError
from harness.plan.graph import Graph
from harness.plan.model import Plan

# "web/src/client" names web/src/client.ts; "app/models" app/models.py; "web/lib" its index file
STEM_EXTENSIONS = (".py", *lang_js.EXTENSIONS, ".sh", ".bash")
INDEX_NAMES = ("__init__.py", *(f"index{e}" for e in lang_js.EXTENSIONS))
CRITICAL_PRIORITY = "high"
OTHER_PRIORITY = "normal"


@dataclass(frozen=True)
class Edge:
    """Item `after` depends on item `before`, because of these imports (importer, imported)."""

    before: str
    after: str
    because: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "because": [list(p) for p in self.because]}


@dataclass
class Ordered:
    plan: Plan
    depends_on: dict[str, list[str]]  # the plan's and the added ones, in plan order
    added: list[Edge] = field(default_factory=list)
    against: list[Edge] = field(default_factory=list)  # imports the plan's own order contradicts (kept)
    touched: dict[str, list[str]] = field(default_factory=dict)  # item -> files of the graph
    unmapped: dict[str, list[str]] = field(default_factory=dict)  # item -> entries that matched no file of the graph
    critical_path: list[str] = field(default_factory=list)
    critical_size: int = 0
    total_size: int = 0
    code_cycles: list[list[str]] = field(default_factory=list)
    main_dep: dict[str, str | None] = field(default_factory=dict)  # the dependency on each item's longest chain

    def priority(self, item_id: str) -> str:
        return CRITICAL_PRIORITY if item_id in self.critical_path else OTHER_PRIORITY


class FileMap:
    """Entries of an item's `files` to files of the graph."""

    def __init__(self, graph: Graph) -> None:
        self.files = sorted(graph.languages)
        self.known = set(self.files)
        py = [p for p, lang in graph.languages.items() if lang == source_files.PYTHON]
        self.modules = lang_python.Resolver(py).index

    def match(self, entry: str) -> list[str]:
        if entry in self.known:
            return [entry]
        if entry in (".", ""):
            return list(self.files)
        if any(ch in entry for ch in "*?["):
            return [f for f in self.files if fnmatch.fnmatchcase(f, entry)]
        under = [f for f in self.files if f.startswith(entry.rstrip("/") + "/")]
        if under:
            return under
        found = [c for c in (entry + e for e in STEM_EXTENSIONS) if c in self.known]
        found += [c for c in (posixpath.join(entry, n) for n in INDEX_NAMES) if c in self.known]
        if found:
            return found[:1]
        return self.modules.get(entry, [])[:1] if "/" not in entry else []


def _reaches(deps: dict[str, list[str]], start: str, goal: str) -> bool:
    """Whether start depends on goal, directly or through others."""
    seen, todo = {start}, [start]
    while todo:
        for d in deps[todo.pop()]:
            if d == goal:
                return True
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return False


def _candidates(plan: Plan, graph: Graph, touched: dict[str, list[str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(before, after) item pairs the imports ask for, with the imports, in plan order."""
    owners: dict[str, list[str]] = {}
    for item_id, paths in touched.items():
        for p in paths:
            owners.setdefault(p, []).append(item_id)
    pos = {i.id: n for n, i in enumerate(plan.items)}
    found: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for after in plan.items:
        for importer in touched[after.id]:
            for imported in sorted(graph.edges.get(importer, ())):
                for before in owners.get(imported, []):
                    if before != after.id:
                        found.setdefault((before, after.id), []).append((importer, imported))
    return dict(sorted(found.items(), key=lambda kv: (pos[kv[0][0]], pos[kv[0][1]])))


def order(plan: Plan, graph: Graph) -> Ordered:
    fmap = FileMap(graph)
    out = Ordered(plan, {i.id: list(i.depends_on) for i in plan.items}, code_cycles=graph.cycles())
    for item in plan.items:
        hits = {e: fmap.match(e) for e in item.files}
        out.touched[item.id] = sorted({f for found in hits.values() for f in found})
        missing = [e for e, found in hits.items() if not found]
        if missing:
            out.unmapped[item.id] = missing
    for (before, after), because in _candidates(plan, graph, out.touched).items():
        edge = Edge(before, after, tuple(because))
        if _reaches(out.depends_on, after, before):
            continue  # ordered so already
        if _reaches(out.depends_on, before, after):
            out.against.append(edge)
        else:
            out.depends_on[after].append(before)
            out.added.append(edge)
    _critical(out)
    return out


def _critical(out: Ordered) -> None:
    """The longest chain by size: each item's longest chain ending in it, in dependency order."""
    items = out.plan.items
    size = {i.id: i.size for i in items}
    best: dict[str, int] = {}
    prev: dict[str, str | None] = {}
    pending = [i.id for i in items]
    while pending:
        ready = [x for x in pending if all(d in best for d in out.depends_on[x])]
        if not ready:  # model.check() refuses a cycle and order() adds none: never here
            raise PlanError("the plan has a dependency cycle: " + ", ".join(pending))
        for x in ready:  # plan order breaks ties: the earlier item wins
            deps = out.depends_on[x]
            top = max(deps, key=lambda d: best[d], default=None)
            prev[x] = top
            best[x] = size[x] + (best[top] if top is not None else 0)
        pending = [x for x in pending if x not in best]
    end = max((i.id for i in items), key=lambda x: best[x])
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = prev[node]
    out.main_dep = prev
    out.critical_path = path[::-1]
    out.critical_size = best[end]
    out.total_size = sum(size.values())
