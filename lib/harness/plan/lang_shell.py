"""Shell: the files a script sources, and which files of the repository they are.

A script names what it sources with variables as often as not: `source
"$HARNESS_ROOT/lib/log.sh"`, `. "${BASH_SOURCE[0]%/*}/clock.sh"`, `source
"$(dirname "$0")/common.sh"`. What counts is the literal tail after the last
expansion (`lib/log.sh`, `clock.sh`), looked up beside the script, then from the
repository's top, then as the end of exactly one file's path. A `# shellcheck
source=PATH` directive on the line before wins (SCRIPTDIR in it is the script's
directory), and `source=/dev/null` means nothing. In a .bats file `load NAME` sources
NAME.bash beside it.

Not understood: a path held in a variable set elsewhere (`source "$CONF"`), a
source inside a string passed to `eval` or `bash -c`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SUBST = r"\$\((?:[^()]|\([^()]*\))*\)"  # $(...), one level of nesting
_WORD = rf"""(?:"(?:{_SUBST}|[^"\n])*"|'[^'\n]*'|{_SUBST}|\$\{{[^}}\n]*\}}|[^\s;&|()"'])+"""
_SOURCE_RE = re.compile(rf"(?:^|[;&|({{]|\bthen|\bdo|\belse)[ \t]*(?:source|\.|(load))[ \t]+({_WORD})", re.MULTILINE)
_DIRECTIVE_RE = re.compile(r"#\s*shellcheck\s+(?:[^\n]*\s)?source=(\S+)")
# the last expansion in a word: $VAR, ${...}, $(...) (one level of nesting), `...`
_EXPANSION_RE = re.compile(rf"""\$\{{[^}}]*\}}|{_SUBST}|\$[A-Za-z_0-9@*#?$!-]+|`[^`]*`""")


@dataclass(frozen=True, slots=True)
class Source:
    """One sourced path as written (quotes removed), the directive above it, and
    whether it is a bats `load` (NAME.bash)."""

    word: str
    directive: str = ""
    load: bool = False


def sources(text: str) -> list[Source]:
    if "source" not in text and ". " not in text and "load" not in text:
        return []
    out: list[Source] = []
    for m in _SOURCE_RE.finditer(text):
        word = m.group(2)
        line_start = text.rfind("\n", 0, m.start(2))
        prev_start = text.rfind("\n", 0, max(line_start, 0))
        above = text[prev_start + 1:line_start] if line_start > 0 else ""
        d = _DIRECTIVE_RE.search(above)
        out.append(Source(word, d.group(1) if d else "", m.group(1) is not None))
    return out


def literal_tail(word: str) -> tuple[str, bool]:
    """The part of the word after its last expansion, unquoted, and whether that is
    the whole word (no expansion in it)."""
    ends = [m.end() for m in _EXPANSION_RE.finditer(word)]
    tail = word[ends[-1]:] if ends else word
    return tail.replace('"', "").replace("'", ""), not ends


class Resolver:
    """Sourced paths to files, among one repository's files (relative POSIX paths)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.files = set(paths)
        self.by_name: dict[str, list[str]] = {}
        for p in sorted(self.files):
            self.by_name.setdefault(posixpath.basename(p), []).append(p)

    def _lookup(self, here: str, rel: str, whole: bool) -> str | None:
        rel = posixpath.normpath(rel)
        if rel.startswith("../") and not here:
            return None
        for candidate in (posixpath.normpath(posixpath.join(here, rel)), rel):
            if candidate in self.files:
                return candidate
        if not whole:  # a tail after an expansion: it may end any path; one match only
            hits = [p for p in self.by_name.get(posixpath.basename(rel), []) if p.endswith("/" + rel) or p == rel]
            if len(hits) == 1:
                return hits[0]
        return None

    def resolve(self, importer: str, src: Source) -> str | None:
        here = posixpath.dirname(importer)
        if src.directive:
            if src.directive == "/dev/null":
                return None
            return self._lookup(here, src.directive.replace("SCRIPTDIR", here or ".").lstrip("/"), True)
        if src.load and not importer.endswith((".bats", ".bash")):
            return None  # `load` is bats' own; elsewhere it is some command
        tail, whole = literal_tail(src.word)
        if src.load and not tail.endswith(".bash"):
            tail += ".bash"
        if whole and tail.startswith("/"):
            return None  # an absolute path: outside the repository
        tail = tail.lstrip("/")
        return self._lookup(here, tail, whole) if tail else None
