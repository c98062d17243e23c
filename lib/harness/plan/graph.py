"""The import graph of a repository: which of its files each file imports or sources.

    g = graph.build(Path("/srv/repo"))
    g.edges["app/api.py"]       # {"app/models.py", "app/db.py"}
    g.cycles()                  # [["a.py", "b.py"]]: files that import each other, in a circle
    g.layers()                  # [[files importing nothing of the repository], [importing only those], ...]

A cycle is reported, never refused: code that imports itself in a circle is still
code a plan works on. Layers are the topological levels of the graph with each
cycle taken as one node: a file's layer is one more than the highest layer of what
it imports, so layer 0 is the foundation and the last layer what nothing else needs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.plan import files as source_files
from harness.plan import lang_js, lang_python, lang_shell
from harness.plan.errors import RepoError


@dataclass
class Graph:
    root: Path
    languages: dict[str, str]  # relative path -> language
    edges: dict[str, set[str]] = field(default_factory=dict)  # importer -> files it imports
    external: int = 0  # imports of something outside the repository (a package, the standard library)
    unreadable: list[str] = field(default_factory=list)
    too_big: list[str] = field(default_factory=list)

    def edge_count(self) -> int:
        return sum(len(v) for v in self.edges.values())

    def importers(self) -> dict[str, set[str]]:
        """Each file to the files that import it."""
        out: dict[str, set[str]] = {}
        for src, dsts in self.edges.items():
            for dst in dsts:
                out.setdefault(dst, set()).add(src)
        return out

    def components(self) -> list[list[str]]:
        """The strongly connected components, each sorted, in reverse topological order
        (a component comes after every component it imports); Tarjan's, without recursion."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        out: list[list[str]] = []
        for start in self.languages:
            if start in index:
                continue
            work = [(start, iter(sorted(self.edges.get(start, ()))))]
            index[start] = low[start] = len(index)
            stack.append(start)
            on_stack.add(start)
            while work:
                node, children = work[-1]
                child = next(children, None)
                if child is not None:
                    if child not in index:
                        index[child] = low[child] = len(index)
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, iter(sorted(self.edges.get(child, ())))))
                    elif child in on_stack:
                        low[node] = min(low[node], index[child])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    out.append(sorted(comp))
        return out

    def cycles(self) -> list[list[str]]:
        """Groups of files that import each other in a circle (a file importing itself too)."""
        return [c for c in self.components() if len(c) > 1 or c[0] in self.edges.get(c[0], ())]

    def layers(self) -> list[list[str]]:
        level: dict[str, int] = {}
        for comp in self.components():  # what a component imports comes before it
            members = set(comp)
            below = [level[d] for f in comp for d in self.edges.get(f, ()) if d not in members]
            lv = max(below) + 1 if below else 0
            for f in comp:
                level[f] = lv
        out: list[list[str]] = [[] for _ in range(max(level.values()) + 1)] if level else []
        for f in sorted(level):
            out[level[f]].append(f)
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "root": str(self.root), "files": len(self.languages),
            "by_language": dict(sorted(Counter(self.languages.values()).items())),
            "edges": self.edge_count(), "external_imports": self.external,
            "cycles": self.cycles(), "unreadable": self.unreadable, "too_big": self.too_big,
        }


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def build(root: Path, skip_hidden: bool = True, skip_dirs: frozenset[str] = source_files.SKIP_DIRS) -> Graph:
    """The import graph of every source file under root."""
    if not root.is_dir():
        raise RepoError(f"not a directory: {root}")
    found = source_files.find(root, skip_hidden, skip_dirs)
    g = Graph(root, found.languages, too_big=found.too_big)
    by_lang: dict[str, list[str]] = {}
    for path, lang in found.languages.items():
        by_lang.setdefault(lang, []).append(path)
    py = lang_python.Resolver(by_lang.get(source_files.PYTHON, []))
    js = lang_js.Resolver(by_lang.get(source_files.JAVASCRIPT, []) + by_lang.get(source_files.TYPESCRIPT, []))
    sh = lang_shell.Resolver(by_lang.get(source_files.SHELL, []))
    for path, lang in found.languages.items():
        data = _read(root / path)
        if data is None:
            g.unreadable.append(path)
            continue
        if lang == source_files.PYTHON:
            targets = _python(g, py, path, data)
        elif lang == source_files.SHELL:
            targets = _shell(g, sh, path, data)
        else:
            targets = _js(g, js, path, data)
        if targets:
            g.edges[path] = targets
    return g


def _python(g: Graph, resolver: lang_python.Resolver, path: str, data: bytes) -> set[str]:
    out: set[str] = set()
    for imp in lang_python.imports(data):
        hits = resolver.resolve(path, imp)
        out.update(hits)
        g.external += not hits
    return out


def _js(g: Graph, resolver: lang_js.Resolver, path: str, data: bytes) -> set[str]:
    out: set[str] = set()
    for spec in lang_js.specifiers(data.decode("utf-8", "replace")):
        hit = resolver.resolve(path, spec)
        if hit:
            out.add(hit)
        else:
            g.external += 1
    return out


def _shell(g: Graph, resolver: lang_shell.Resolver, path: str, data: bytes) -> set[str]:
    out: set[str] = set()
    for src in lang_shell.sources(data.decode("utf-8", "replace")):
        hit = resolver.resolve(path, src)
        if hit:
            out.add(hit)
        else:
            g.external += 1
    return out
