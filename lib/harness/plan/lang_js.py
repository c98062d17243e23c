"""JavaScript and TypeScript: the modules a file imports, and the files they name.

A lexer walks the text: string and template literals and comments are taken whole
(an `import` inside one is none), and at each `import`, `export` or `require` that
is no part of a longer name, the statement is read: `import ... from "x"`, `import
"x"`, `import type`, `export ... from "x"` (`export *`, `export * as ns`, `export {
a }`), `require("x")` and `import("x")` with a string literal. Only relative
specifiers ("./x", "../x") name files of the repository; a bare one ("react",
"@scope/pkg") is a package from outside. A relative specifier is the file itself,
or with an extension (.ts .tsx .d.ts .js .jsx .mjs .cjs .mts .cts), or the index
file of a directory; "./x.js" also finds x.ts (how TypeScript's ES modules name
their imports).

Not understood: tsconfig `paths` and `baseUrl`, package.json `exports`, bundler
aliases, a specifier built at run time, and a regular expression literal holding a
quote (it can hide what follows on its line).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

# Every alternative begins with a fixed character, so the regular expression engine
# skips ahead to the next candidate at C speed.
_LEX_RE = re.compile(r"""
    '(?:\\.|[^'\\\n])*' | "(?:\\.|[^"\\\n])*" | `(?:\\.|[^`\\])*`
  | //[^\n]* | /\*.*?(?:\*/|\Z)
  | import\b | export\b | require\b
""", re.VERBOSE | re.DOTALL)
_SPEC = r"""(?P<q>['"])(?P<spec>[^'"\n]+)(?P=q)"""
_STATEMENT_RE = re.compile(r"""
    import\s*(?:type\s+)?
        (?:(?:[\w$]+\s*,?\s*)?(?:\*\s*as\s+[\w$]+\s*|\{[^{}]*\}\s*)?from\s*)?""" + _SPEC + r"""
  | import\s*\(\s*""" + _SPEC.replace("q>", "q2>").replace("spec>", "spec2>").replace("(?P=q)", "(?P=q2)") + r"""
  | export\s*(?:type\s+)?(?:\*(?:\s*as\s+[\w$]+)?|\{[^{}]*\})\s*from\s*"""
    + _SPEC.replace("q>", "q3>").replace("spec>", "spec3>").replace("(?P=q)", "(?P=q3)") + r"""
  | require\s*\(\s*""" + _SPEC.replace("q>", "q4>").replace("spec>", "spec4>").replace("(?P=q)", "(?P=q4)"),
    re.VERBOSE)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$.")
EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts")
# "./x.js" in TypeScript's ES modules names x.ts
_TS_FOR_JS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}


def specifiers(text: str) -> list[str]:
    """The module specifiers the file imports, requires or re-exports, in order."""
    if "import" not in text and "require" not in text and "export" not in text:
        return []
    out: list[str] = []
    statement = _STATEMENT_RE.match
    for m in _LEX_RE.finditer(text):
        start = m.start()
        if text[start] not in "ier" or (start and text[start - 1] in _NAME_CHARS):
            continue  # a literal, a comment, or part of a longer name (foo.import, reimport)
        s = statement(text, start)
        if s:
            out.append(s.group("spec") or s.group("spec2") or s.group("spec3") or s.group("spec4"))
    return out


class Resolver:
    """Relative specifiers to files, among one repository's files (relative POSIX paths)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.files = set(paths)

    def _candidates(self, base: str) -> list[str]:
        out = [base]
        stem, ext = posixpath.splitext(base)
        out += [stem + alt for alt in _TS_FOR_JS.get(ext, ())]
        out += [base + e for e in EXTENSIONS]
        out += [posixpath.join(base, "index" + e) for e in EXTENSIONS]
        return out

    def resolve(self, importer: str, spec: str) -> str | None:
        """The file spec names from importer; None for a package or a file not found."""
        spec = spec.split("?", 1)[0].split("#", 1)[0]
        if not (spec in (".", "..") or spec.startswith(("./", "../"))):
            return None
        base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec))
        if base == ".." or base.startswith("../"):
            return None
        return next((c for c in self._candidates(base) if c in self.files and c != importer), None)
