"""The source files of a repository and the language of each.

A file's language comes from its extension, or for a file without one from its
first line (`#!/usr/bin/env bash`, `#!/usr/bin/python3`). Hidden directories (.git,
.venv), node_modules and __pycache__ are skipped unless the caller says otherwise;
symbolic links are not followed (a link may lead out of the repository or in a
circle), and files over MAX_FILE_BYTES are left out and counted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PYTHON, JAVASCRIPT, TYPESCRIPT, SHELL = "python", "javascript", "typescript", "shell"
LANGUAGES = (PYTHON, JAVASCRIPT, TYPESCRIPT, SHELL)
EXTENSIONS: dict[str, str] = {
    ".py": PYTHON,
    ".js": JAVASCRIPT, ".jsx": JAVASCRIPT, ".mjs": JAVASCRIPT, ".cjs": JAVASCRIPT,
    ".ts": TYPESCRIPT, ".tsx": TYPESCRIPT, ".mts": TYPESCRIPT, ".cts": TYPESCRIPT,
    ".sh": SHELL, ".bash": SHELL, ".bats": SHELL,
}
SKIP_DIRS = frozenset({"node_modules", "__pycache__"})
MAX_FILE_BYTES = 16 * 1024 * 1024
SHEBANG_BYTES = 128
_SHEBANG_RE = re.compile(rb"^#!\s*\S*?(?:/env\s+(?:-\S+\s+)*)?(?:\S*/)?(bash|sh|dash|ksh|zsh|python[0-9.]*)\b")


@dataclass
class SourceFiles:
    """Relative POSIX paths to their language, and what was left out."""

    root: Path
    languages: dict[str, str] = field(default_factory=dict)
    too_big: list[str] = field(default_factory=list)


def _shebang_language(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(SHEBANG_BYTES)
    except OSError:
        return None
    m = _SHEBANG_RE.match(head)
    if not m:
        return None
    return PYTHON if m.group(1).startswith(b"python") else SHELL


def language_of(name: str, path: str) -> str | None:
    """The language of the file called name at path (None: not a source file)."""
    dot = name.rfind(".")
    if dot > 0:
        return EXTENSIONS.get(name[dot:].lower())
    return _shebang_language(path) if dot < 0 else None


def find(root: Path, skip_hidden: bool = True, skip_dirs: frozenset[str] = SKIP_DIRS) -> SourceFiles:
    """Every source file under root, walked without following links, in sorted order."""
    found = SourceFiles(root)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, rel) if rel else root), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            sub = f"{rel}/{name}" if rel else name
            if entry.is_dir(follow_symlinks=False):
                if not (skip_hidden and name.startswith(".")) and name not in skip_dirs:
                    stack.append(sub)
            elif entry.is_file(follow_symlinks=False):
                lang = language_of(name, entry.path)
                if lang is None:
                    continue
                if entry.stat(follow_symlinks=False).st_size > MAX_FILE_BYTES:
                    found.too_big.append(sub)
                else:
                    found.languages[sub] = lang
    found.languages = dict(sorted(found.languages.items()))
    return found
