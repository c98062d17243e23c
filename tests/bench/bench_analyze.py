"""The dependency analyzer (lib/harness/plan/graph.py) on large real repositories,
against a plain read of the same files, in the same run.

    .venv/bin/python tests/bench/bench_analyze.py [--out .bench/analyze.json] [--runs 3]

The repositories are what any machine that ran `make setup` holds offline: the
project's own .venv site-packages (some 2,000 Python files: mypy, pytest, pip...),
npm's own package (`npm root -g`/npm: some 1,200 JavaScript files), and this
project's tree. For each: the source files are found and read once (into the page
cache), then, best of --runs:

- baseline: the source files found and each read whole (what no analyzer can beat);
- analyzer: graph.build (find, read, lex, resolve every import) plus its cycles
  and layers, all that `plan.sh analyze` computes;
- for comparison, once: ast.parse of the Python files alone (what an analyzer built
  on Python's parser would spend before resolving anything).

Targets, for each repository: at least TARGET_FILES_PER_S files per second, and at
most TARGET_RATIO times the baseline (a lexer looks at every byte; a read only
copies them). Exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT / "lib"))
from harness.plan import files, graph

TARGET_FILES_PER_S = 500
TARGET_RATIO = 40.0
EVERYTHING = frozenset({"__pycache__"})  # an installed tree: node_modules and hidden directories are its content


def repositories() -> list[tuple[str, Path, bool]]:
    """(name, root, whole): whole means nothing is skipped but __pycache__."""
    out = [(f"site-packages ({ROOT.name}/.venv)", next((ROOT / ".venv" / "lib").glob("python3*/site-packages")), True)]
    npm = shutil.which("npm")
    if npm:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False).stdout.strip()
        if root and (Path(root) / "npm").is_dir():
            out.append(("npm (npm root -g)", Path(root) / "npm", True))
    out.append(("this project", ROOT, False))
    return out


def best(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@dataclass
class Row:
    name: str
    root: str
    files: int
    bytes: int
    by_language: dict[str, int]
    edges: int
    cycles: int
    layers: int
    read_s: float
    analyze_s: float
    parse_s: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.analyze_s

    @property
    def ratio(self) -> float:
        return self.analyze_s / self.read_s

    @property
    def met(self) -> bool:
        return self.files_per_s >= TARGET_FILES_PER_S and self.ratio <= TARGET_RATIO


def measure(name: str, root: Path, whole: bool, runs: int) -> Row:
    hidden, skip = (False, EVERYTHING) if whole else (True, files.SKIP_DIRS)
    paths = [root / p for p in files.find(root, hidden, skip).languages]
    size = sum(len(p.read_bytes()) for p in paths)  # into the page cache

    def read_all() -> None:  # the floor: find the files, read each
        for p in files.find(root, hidden, skip).languages:
            (root / p).read_bytes()

    def parse_python() -> None:  # what a parser-based analyzer would spend on its Python files alone
        for p in paths:
            if p.suffix == ".py":
                with contextlib.suppress(SyntaxError, ValueError):
                    ast.parse(p.read_bytes())

    def analyze() -> graph.Graph:
        g = graph.build(root, hidden, skip)
        g.cycles()
        g.layers()
        return g

    read_s, analyze_s, parse_s = best(read_all, runs), best(analyze, runs), best(parse_python, 1)
    g = analyze()
    return Row(name, str(root), len(paths), size, g.summary()["by_language"], g.edge_count(), len(g.cycles()),
               len(g.layers()), read_s, analyze_s, parse_s)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "analyze.json")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rows = [measure(name, root, whole, args.runs) for name, root, whole in repositories()]
    print(f"dependency analyzer, best of {args.runs}; targets: >= {TARGET_FILES_PER_S} files/s and "
          f"<= {TARGET_RATIO:g}x a plain read of the same files")
    print(f"  {'repository':<34} {'files':>6} {'MB':>6} {'edges':>6} {'cycles':>6} {'read':>8} {'analyze':>8} "
          f"{'files/s':>8} {'ratio':>6}  {'ast.parse (.py only, once)':>26}")
    for r in rows:
        print(f"  {r.name:<34} {r.files:>6} {r.bytes / 2**20:>6.1f} {r.edges:>6} {r.cycles:>6} {r.read_s:>7.2f}s "
              f"{r.analyze_s:>7.2f}s {r.files_per_s:>8.0f} {r.ratio:>5.1f}x  {r.parse_s:>25.2f}s  "
              f"{'ok' if r.met else 'MISSED'}")
    met = all(r.met for r in rows)
    print(f"target: {'ok' if met else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"target_files_per_s": TARGET_FILES_PER_S, "target_ratio": TARGET_RATIO,
           "repositories": [{**asdict(r), "files_per_s": r.files_per_s, "ratio": r.ratio, "met": r.met} for r in rows]}
    args.out.write_text(json.dumps(doc, indent=1))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
