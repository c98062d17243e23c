"""Python: the imports a file makes, and the files they name.

Every `import` and `from ... import` counts, wherever it stands (in a function, under
`if TYPE_CHECKING:`, in a try): each is a dependency the file has on a module.
Relative imports resolve against the file's package; absolute ones against the
repository's import roots: the directory above each top-level package (the first
directory up without an `__init__.py`: `lib/` for lib/harness/), the repository
itself and `src/`; a script outside any package also finds modules beside it
(Python puts a script's directory first on its path). `from P import n` names the
module P.n when there is one, else P. A name found nowhere is outside the repository
(the standard library, an installed package) and is no edge.

The imports are found by a lexer, not a parser (a parse costs several times as much,
and fails on Python 2 and templates): string literals and comments are skipped
whole, and an import is recognised where a statement starts. The tests hold it to
Python's own parser on this project's files and a part of the standard library.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

# A lexer over the bytes: a string literal (its prefix makes no difference to where
# it ends) or a comment is taken whole, so an "import" inside a docstring or after a
# "#" is none; and a statement may start after a newline, a ";" or a ":" (`import`
# and `from` are keywords: nothing else begins with them there). Every alternative
# begins with a fixed character, so the engine skips ahead at C speed; _STATEMENT_RE
# then reads the import at each statement start.
_LEX_RE = re.compile(rb'''
    """(?:\\.|[^\\"]|"(?!""))*""" | \'\'\'(?:\\.|[^\\']|'(?!''))*\'\'\'
  | "(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*'
  | \#[^\n]*
  | \n[ \t]*(?=[fi]) | ;[ \t]*(?=[fi]) | :[ \t]*(?=[fi])
''', re.VERBOSE | re.DOTALL)
_STATEMENT_RE = re.compile(rb'''
    from[ \t]+(?P<level>\.*)[ \t]*(?P<module>[\w.]*)[ \t]+import\b[ \t]*(?P<names>\([^)]*\)|(?:[^\n;\#\\]|\\\n?)*)
  | import\b[ \t]*(?P<modules>(?:[^\n;\#\\]|\\\n?)*)
''', re.VERBOSE | re.DOTALL)
_COMMENT_RE = re.compile(rb"#[^\n]*")


@dataclass(frozen=True, slots=True)
class Import:
    """`import a.b` is Import("a.b"); `from ..x import y, z` is Import("x", ("y", "z"), 2)."""

    module: str
    names: tuple[str, ...] = ()
    level: int = 0


def _names(text: bytes) -> tuple[str, ...]:
    """`a, b as c` or `(a,  # a note` newline `b)`: the names, without their `as`."""
    if b"#" in text:
        text = _COMMENT_RE.sub(b"", text)
    cleaned = text.replace(b"(", b" ").replace(b")", b" ").replace(b"\\", b" ")
    return tuple(part.split()[0].decode("utf-8", "replace") for part in cleaned.split(b",") if part.split())


def imports(data: bytes) -> list[Import]:
    """The imports in a file's bytes, in order."""
    if b"import" not in data:
        return []
    data = b"\n" + data  # the first line starts a statement too
    statement = _STATEMENT_RE.match
    out: list[Import] = []
    for m in _LEX_RE.finditer(data):
        if data[m.start()] not in b"\n;:":
            continue  # a literal or a comment
        s = statement(data, m.end())
        if s is None:
            continue
        if s.group("modules") is not None:
            out.extend(Import(name) for name in _names(s.group("modules")))
        else:
            out.append(Import(s.group("module").decode("utf-8", "replace"), _names(s.group("names")),
                              len(s.group("level"))))
    return out


class Resolver:
    """Module names to files, for one repository's Python files (relative POSIX paths)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.files = set(paths)
        self.package_dirs = {posixpath.dirname(p) for p in self.files if posixpath.basename(p) == "__init__.py"}
        self.index: dict[str, list[str]] = {}
        for path in sorted(self.files):
            for name in self._names_of(path):
                self.index.setdefault(name, []).append(path)

    def package_root(self, path: str) -> str:
        """The import root of the file's top-level package ("lib" for lib/harness/x.py);
        the file's own directory when it is in no package."""
        d = posixpath.dirname(path)
        while d in self.package_dirs:
            d = posixpath.dirname(d)
        return d

    def _names_of(self, path: str) -> set[str]:
        stem = path[:-3]
        if stem.endswith("/__init__") or stem == "__init__":
            stem = posixpath.dirname(stem)
        names: set[str] = set()
        roots = {"", "src"}
        if posixpath.dirname(path) in self.package_dirs:  # a module beside no __init__.py is found only beside it
            roots.add(self.package_root(path))
        for root in roots:
            if root and not stem.startswith(root + "/"):
                continue
            rel = stem[len(root) + 1:] if root else stem
            if rel and all(part.isidentifier() for part in rel.split("/")):
                names.add(rel.replace("/", "."))
        return names

    def _module_file(self, base_dir: str, dotted: str) -> str | None:
        """The file of module `dotted` under directory base_dir (a module or a package)."""
        stem = posixpath.join(base_dir, dotted.replace(".", "/")) if dotted else base_dir
        for candidate in (stem + ".py", posixpath.join(stem, "__init__.py")):
            if candidate in self.files:
                return candidate
        return None

    def _absolute(self, importer: str, dotted: str) -> str | None:
        here = posixpath.dirname(importer)
        if here not in self.package_dirs:  # a script: its own directory comes first
            found = self._module_file(here, dotted)
            if found:
                return found
        hits = self.index.get(dotted)
        if not hits:
            return None
        own_root = self.package_root(importer)
        return next((h for h in hits if self.package_root(h) == own_root), hits[0])

    def _longest(self, importer: str, dotted: str) -> str | None:
        """`import a.b.c`: the module a.b.c, else the longest prefix of it that is one."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            found = self._absolute(importer, ".".join(parts[:n]))
            if found:
                return found
        return None

    def _relative_base(self, importer: str, level: int) -> str | None:
        d = posixpath.dirname(importer)
        if d not in self.package_dirs:
            return None
        for _ in range(level - 1):
            d = posixpath.dirname(d)
            if d not in self.package_dirs:
                return None
        return d

    def resolve(self, importer: str, imp: Import) -> list[str]:
        """The files one import of importer names (none: outside the repository)."""
        if imp.level:
            base = self._relative_base(importer, imp.level)
            if base is None:
                return []
            target = self._module_file(base, imp.module)
            subs = [self._module_file(base, f"{imp.module}.{n}" if imp.module else n) for n in imp.names if n != "*"]
        elif not imp.names:
            target, subs = self._longest(importer, imp.module), []
        else:
            target = self._absolute(importer, imp.module)
            subs = [self._absolute(importer, f"{imp.module}.{n}") for n in imp.names if n != "*"]
        found = [s for s in subs if s]
        named = [n for n in imp.names if n != "*"]
        if target and (not named or len(found) < len(named) or "*" in imp.names):
            found.append(target)
        return sorted(set(found) - {importer})
