"""How a plan and an import graph are shown: a tree and a summary for a person, JSON
for scripts.

The tree hangs each item under the dependency on its longest chain, so the critical
path (marked *) runs straight down; an item's other dependencies are named on its
line. Text from the model (summary, titles, files) goes through Style.text: escaped
on a terminal, as it is in a pipe.
"""

from __future__ import annotations

from typing import Any

from harness.plan.graph import Graph
from harness.plan.order import Ordered
from harness.report.style import Style

LAYER_NAMES_SHOWN = 6


def _points(n: int) -> str:
    return f"{n} point{'s' if n != 1 else ''}"


def _children(o: Ordered) -> dict[str | None, list[str]]:
    kids: dict[str | None, list[str]] = {}
    for item in o.plan.items:
        kids.setdefault(o.main_dep.get(item.id), []).append(item.id)
    return kids


def _line(o: Ordered, item_id: str, st: Style) -> str:
    item = o.plan.item(item_id)
    mark = "*" if item_id in o.critical_path else " "
    others = [d for d in o.depends_on[item_id] if d != o.main_dep.get(item_id)]
    parts = [f"{mark} {item_id} [{item.size}] {st.text(item.title)}"]
    if item.files:
        parts.append("— " + ", ".join(st.text(f) for f in item.files))
    if others:
        parts.append(f"(also after {', '.join(others)})")
    return " ".join(parts)


def tree_lines(o: Ordered, st: Style) -> list[str]:
    kids = _children(o)
    lines: list[str] = []

    def walk(node: str, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        lines.append(prefix + branch + _line(o, node, st))
        below = kids.get(node, [])
        pad = prefix if top else prefix + ("    " if last else "│   ")
        for n, child in enumerate(below):
            walk(child, pad, n == len(below) - 1, False)

    for root in kids.get(None, []):
        walk(root, "", True, True)
    return lines


def plan_text(o: Ordered, st: Style) -> str:
    n = len(o.plan.items)
    out = []
    if o.plan.summary:
        out.append(st.bold("plan: ") + st.text(o.plan.summary))
    out.append(f"{n} item{'s' if n != 1 else ''}, {_points(o.total_size)} in all; critical path (*) "
               f"{_points(o.critical_size)}: {' -> '.join(o.critical_path)}")
    out += ["", *tree_lines(o, st)]
    if o.added:
        out += ["", "added from the code's imports:"]
        out += [f"  {e.after} after {e.before}: " + "; ".join(f"{st.text(a)} imports {st.text(b)}" for a, b in e.because)
                for e in o.added]
    if o.against:
        out += ["", "imports against the plan's order (the plan's order kept):"]
        out += [f"  {e.before} comes after {e.after}, yet " + "; ".join(f"{st.text(a)} imports {st.text(b)}"
                                                                        for a, b in e.because) for e in o.against]
    if o.unmapped:
        out += ["", "not in the import graph (new files, or not code):"]
        out += [f"  {k}: {', '.join(st.text(f) for f in v)}" for k, v in o.unmapped.items()]
    if o.code_cycles:
        out += ["", f"cycles in the code (reported, not refused): {len(o.code_cycles)}"]
        out += ["  " + " <-> ".join(c) for c in o.code_cycles[:10]]
    return "\n".join(out)


def plan_doc(o: Ordered, queue_ids: dict[str, str]) -> dict[str, Any]:
    added: dict[str, list[str]] = {}
    for e in o.added:
        added.setdefault(e.after, []).append(e.before)
    items = [{
        "id": i.id, "queue_id": queue_ids.get(i.id), "title": i.title, "prompt": i.prompt, "files": list(i.files),
        "touches": o.touched.get(i.id, []), "unmapped": o.unmapped.get(i.id, []), "size": i.size,
        "depends_on": o.depends_on[i.id], "added_depends_on": added.get(i.id, []), "verify": i.verify or None,
        "priority": o.priority(i.id), "critical": i.id in o.critical_path,
    } for i in o.plan.items]
    return {
        "summary": o.plan.summary, "items": items, "total_size": o.total_size, "critical_size": o.critical_size,
        "critical_path": o.critical_path, "added": [e.as_dict() for e in o.added],
        "against": [e.as_dict() for e in o.against], "code_cycles": o.code_cycles,
    }


def graph_doc(g: Graph) -> dict[str, Any]:
    return {**g.summary(), "layers": g.layers(), "edges_by_file": {k: sorted(v) for k, v in sorted(g.edges.items())}}


def graph_text(g: Graph, st: Style) -> str:
    s = st.clean(g.summary())
    langs = ", ".join(f"{lang} {n}" for lang, n in s["by_language"].items()) or "none"
    out = [f"repository {st.text(str(g.root))}: {s['files']} source files ({langs}); {s['edges']} imports between them, "
           f"{s['external_imports']} of modules from outside"]
    cycles = s["cycles"]
    out.append(f"cycles: {len(cycles)}" if cycles else "cycles: none")
    out += ["  " + " <-> ".join(c) for c in cycles]
    for key, what in (("unreadable", "unreadable"), ("too_big", "too big, left out")):
        if s[key]:
            out.append(f"{what}: {len(s[key])}: " + ", ".join(s[key][:LAYER_NAMES_SHOWN]))
    layers = st.clean(g.layers())
    out.append(f"layers: {len(layers)} (a file imports only files of the layers before its own)")
    for n, layer in enumerate(layers):
        more = f" (+{len(layer) - LAYER_NAMES_SHOWN} more)" if len(layer) > LAYER_NAMES_SHOWN else ""
        out.append(f"  {n:>3}  {len(layer):>5} file{'s' if len(layer) != 1 else ' '}  "
                   + ", ".join(layer[:LAYER_NAMES_SHOWN]) + more)
    return "\n".join(out)
