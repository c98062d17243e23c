"""The dependency analyzer (lib/harness/plan/graph.py and its languages): fixture
repositories with known import graphs, one per language, and this project's own tree."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from harness.plan import graph, lang_js, lang_python, lang_shell
from harness.plan.errors import RepoError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "plan"
ROOT = Path(__file__).resolve().parents[2]


def edges(g: graph.Graph) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in sorted(g.edges.items())}


def test_python_fixture_has_its_known_graph() -> None:
    g = graph.build(FIXTURES / "py")
    assert edges(g) == {
        "app.py": ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py", "src/srcpkg/thing.py"],
        "pkg/__init__.py": ["pkg/core.py"],
        "pkg/core.py": ["pkg/models.py", "pkg/util.py"],  # from . import util; from .models import Item
        "pkg/models.py": ["pkg/util.py"],  # inside a function; the docstring's "import pkg.core" is no import
        "pkg/sub/deep.py": ["pkg/core.py", "pkg/sub/leaf.py"],  # from ..core; import pkg.sub.leaf
        "pkg/sub/leaf.py": ["pkg/models.py", "pkg/sub/deep.py"],  # under TYPE_CHECKING too
        "scripts/tool.py": ["pkg/util.py", "scripts/helpers.py"],  # a script finds modules beside it
        "src/srcpkg/thing.py": ["src/srcpkg/__init__.py"],  # src/ is an import root
    }
    assert g.cycles() == [["pkg/sub/deep.py", "pkg/sub/leaf.py"]]
    # json twice, os, typing, and `from ... import` past the top package
    assert g.external == 5
    assert g.layers()[0] == ["pkg/sub/__init__.py", "pkg/util.py", "scripts/helpers.py", "src/srcpkg/__init__.py"]
    assert g.layers()[-1] == ["app.py"]


def test_python_file_that_does_not_parse_is_read_all_the_same(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "py", repo)
    (repo / "legacy.py").write_bytes(b'import pkg.util\nfrom pkg import core\nprint "python 2"\n')
    g = graph.build(repo)
    assert sorted(g.edges["legacy.py"]) == ["pkg/core.py", "pkg/util.py"]


def _parsed(data: bytes) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(data)):
        if isinstance(node, ast.Import):
            out += [repr(lang_python.Import(a.name)) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append(repr(lang_python.Import(node.module or "", tuple(a.name for a in node.names), node.level)))
    return sorted(out)


def test_python_lexer_finds_what_pythons_own_parser_finds() -> None:
    """Strings (docstrings, bytes with a backslash-newline, nested quotes), comments
    inside parentheses, `;` and `:` before a statement: on this project's Python files
    and the first 150 of the standard library's."""
    stdlib = sorted(Path(ast.__file__).parent.glob("*.py"))[:150]
    files = sorted(ROOT.glob("lib/**/*.py")) + sorted(ROOT.glob("tests/**/*.py")) + stdlib
    differ = []
    for path in files:
        data = path.read_bytes()
        if sorted(map(repr, lang_python.imports(data))) != _parsed(data):
            differ.append(str(path))
    assert len(files) > 250 and not differ


def test_python_lexer_skips_strings_and_comments() -> None:
    src = (b'x = """\nimport not_this\n"""\ny = b"""\\\nimport nor_this\n"""\n'
           b"# import not_a_comment\nif x: import one; import two\n"
           b"from . import (a,  # a note\n    b as c)\nimportlib = 1\nfrom .importer import z\n")
    assert lang_python.imports(src) == [
        lang_python.Import("one"), lang_python.Import("two"), lang_python.Import("", ("a", "b"), 1),
        lang_python.Import("importer", ("z",), 1)]
    assert sorted(map(repr, lang_python.imports(src))) == _parsed(src)


def test_python_module_beside_no_package_is_found_only_beside_it(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "json.py").write_text("x = 1\n")  # shadows the standard library, for its neighbours only
    (tmp_path / "tools" / "run.py").write_text("import json\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("import json\n")
    g = graph.build(tmp_path)
    assert edges(g) == {"tools/run.py": ["tools/json.py"]}


def test_javascript_and_typescript_fixture_has_its_known_graph() -> None:
    g = graph.build(FIXTURES / "js")
    assert edges(g) == {
        "lib/index.js": ["src/index.ts"],  # "../src": the directory's index file
        "src/a.ts": ["src/lazy.js"],  # import("./lazy")
        "src/b.ts": ["src/a.ts"],  # an import over several lines
        "src/c/index.ts": ["src/util.mjs"],  # export * as util from
        "src/cjs.cjs": ["src/a.ts"],  # require ( "./a" )
        # import, './b.js' as b.ts, import type, export * from "./c" (index), export { d } from
        "src/index.ts": ["src/a.ts", "src/b.ts", "src/c/index.ts", "src/d.tsx", "src/types.ts"],
        "src/lazy.js": ["src/cjs.cjs"],
    }
    assert g.cycles() == [["src/a.ts", "src/cjs.cjs", "src/lazy.js"]]
    assert g.external == 2  # react, ./styles.css; the commented-out imports are not there at all
    assert g.summary()["by_language"] == {"javascript": 4, "typescript": 6}


def test_shell_fixture_has_its_known_graph() -> None:
    g = graph.build(FIXTURES / "sh")
    assert edges(g) == {
        "bin/tool": ["lib/common.sh"],  # no extension: a bash shebang; "$(dirname "$0")/../lib/common.sh"
        "lib/common.sh": ["lib/log.sh"],  # . "${BASH_SOURCE[0]%/*}/log.sh"
        "lib/log.sh": ["lib/clock.sh"],  # the shellcheck source= directive wins
        "run.sh": ["lib/common.sh"],  # after `then`
        "tests/helper.bash": ["lib/log.sh"],
        "tests/t.bats": ["tests/helper.bash"],  # bats' load
    }
    assert g.cycles() == []
    assert g.external == 2  # source /dev/null, source "$CONFIG"
    assert g.layers() == [["lib/clock.sh"], ["lib/log.sh"], ["lib/common.sh", "tests/helper.bash"],
                          ["bin/tool", "run.sh", "tests/t.bats"]]


def test_this_projects_own_tree_has_known_edges() -> None:
    g = graph.build(ROOT)
    known = [
        ("lib/harness/pipeline/finalize.py", "lib/harness/pipeline/receipt.py"),
        ("lib/harness/cli/__init__.py", "lib/harness/cli/plan.py"),
        ("lib/harness/plan/graph.py", "lib/harness/plan/lang_python.py"),
        ("loop.sh", "lib/config.sh"),
        ("lib/log.sh", "lib/clock.sh"),
        ("scripts/plan.sh", "lib/wake.sh"),
        ("tests/bats/e2e.bats", "tests/bats/helpers.bash"),  # load helpers
        ("tests/bench/bench_retention.py", "tests/bench/common.py"),  # a script beside its module
    ]
    missing = [(a, b) for a, b in known if b not in g.edges.get(a, set())]
    assert not missing, missing
    by_lang = g.summary()["by_language"]
    assert by_lang["python"] > 100 and by_lang["shell"] > 30
    assert not any(p.startswith((".venv/", ".tools/", ".git/")) for p in g.languages)
    # the store is below the pipeline: some layer holds store/base.py before finalize.py's
    layer = {f: n for n, files in enumerate(g.layers()) for f in files}
    assert layer["lib/harness/store/base.py"] < layer["lib/harness/pipeline/finalize.py"]


def test_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepoError, match="not a directory"):
        graph.build(tmp_path / "missing")


def test_symlinks_are_not_followed_and_big_files_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("x = 1\n" * 100)
    (tmp_path / "loop").symlink_to(tmp_path)  # a circle, if it were followed
    monkeypatch.setattr(graph.source_files, "MAX_FILE_BYTES", 100)
    g = graph.build(tmp_path)
    assert g.languages == {"a.py": "python"} and g.too_big == ["b.py"]


def test_js_specifiers_read_every_form() -> None:
    text = """import x from "a"; import {y,
      z} from './b'; import * as ns from "./c"; import "./d"; import type { T } from "./e";
      export * from "./f"; export * as g from './g'; export { h } from "./h";
      const i = require('./i'); const j = await import("./j"); foo.import("./not");
      // import k from "./k"
      /* require("./l") */"""
    assert lang_js.specifiers(text) == ["a", "./b", "./c", "./d", "./e", "./f", "./g", "./h", "./i", "./j"]


def test_js_resolution_prefers_the_file_then_extensions_then_index() -> None:
    r = lang_js.Resolver(["src/x.ts", "src/x/index.js", "src/y.js", "lib/z/index.tsx"])
    assert r.resolve("src/main.ts", "./x") == "src/x.ts"
    assert r.resolve("src/main.ts", "./x.js") == "src/x.ts"  # TypeScript's ES modules
    assert r.resolve("src/main.ts", "./y.js") == "src/y.js"
    assert r.resolve("src/main.ts", "../lib/z") == "lib/z/index.tsx"
    assert r.resolve("src/main.ts", "react") is None
    assert r.resolve("main.ts", "../outside") is None


def test_python_relative_imports_resolve_against_the_package() -> None:
    r = lang_python.Resolver(["p/__init__.py", "p/a.py", "p/q/__init__.py", "p/q/b.py", "p/q/c.py"])
    assert r.resolve("p/q/b.py", lang_python.Import("c", ("x",), 1)) == ["p/q/c.py"]
    assert r.resolve("p/q/b.py", lang_python.Import("", ("c",), 1)) == ["p/q/c.py"]
    assert r.resolve("p/q/b.py", lang_python.Import("a", ("*",), 2)) == ["p/a.py"]
    assert r.resolve("p/q/__init__.py", lang_python.Import("b", (), 1)) == ["p/q/b.py"]
    assert r.resolve("p/q/b.py", lang_python.Import("x", ("y",), 3)) == []
    assert r.resolve("p/a.py", lang_python.Import("p.q.c")) == ["p/q/c.py"]
    assert r.resolve("p/a.py", lang_python.Import("p.q.c.attribute")) == ["p/q/c.py"]  # the longest module


def test_shell_literal_tail_and_directives() -> None:
    found = lang_shell.sources('# shellcheck source=SCRIPTDIR/x.sh\nsource "$D/y.sh"\n. ${A}/"z w".sh\n')
    assert [(s.word, s.directive) for s in found] == [('"$D/y.sh"', "SCRIPTDIR/x.sh"), ('${A}/"z w".sh', "")]
    assert lang_shell.literal_tail('"$(cd "$(dirname "$0")" && pwd)/lib/a.sh"') == ("/lib/a.sh", False)
    r = lang_shell.Resolver(["d/x.sh", "d/y.sh", "lib/a.sh"])
    assert r.resolve("d/main.sh", found[0]) == "d/x.sh"  # the directive, SCRIPTDIR the script's own
    assert r.resolve("d/main.sh", lang_shell.Source('"$ROOT/lib/a.sh"')) == "lib/a.sh"
