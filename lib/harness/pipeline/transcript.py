"""The CLI's own transcript of a session, kept in its session directory.

Claude Code writes each conversation to <config>/projects/<project>/<uuid>.jsonl
(<config>: CLAUDE_CONFIG_DIR, else ~/.claude; <project>: the working directory,
every character but letters and digits made '-') and deletes files older than its
cleanupPeriodDays (30 by default). At a session's end the harness copies it to
transcript.jsonl beside the stream, where retention (loopctl.sh gc) and the
receipts' reconciliation find it, and its subagents' transcripts to subagents/. A
fix round resumes the same conversation, so its copy holds the rounds before it too.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NAME = "transcript.jsonl"
SUBAGENTS = "subagents"  # the subagents' transcripts, as the CLI keeps them beside the conversation
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    given = env.get("CLAUDE_CONFIG_DIR")
    return Path(given) if given else Path(env.get("HOME") or "~").expanduser() / ".claude"


def find(uuid: str, cwd: str, env: Mapping[str, str] | None = None, config: Path | None = None) -> Path | None:
    """The conversation's file: in the project directory of its working directory, else
    in any project directory (the CLI's naming of it has changed before)."""
    if not UUID.match(uuid):
        return None
    projects = (config or config_dir(env)) / "projects"
    if cwd:
        direct = projects / re.sub(r"[^A-Za-z0-9]", "-", cwd) / f"{uuid}.jsonl"
        if direct.is_file():
            return direct
    return next((p for p in projects.glob(f"*/{uuid}.jsonl") if p.is_file()), None)


def copy_regular(src: Path, dest: Path) -> None:
    """src (a regular file, never through a symbolic link) to dest: written under a new
    name, mode 0600, then renamed. OSError otherwise."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(fd, "rb") as fin:
            if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
                raise OSError(f"{src} is not a regular file")
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, dest)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def keep(sdir: Path, meta: dict[str, Any], config: Path | None = None) -> dict[str, Any]:
    """Copies the session's transcript into sdir (from config: a sandboxed session's own
    config directory, else the CLI's); answers what meta.json records of it: the copy's
    name, size and place under projects/, or why there is none."""
    uuid = str(meta.get("claude_session_id") or "")
    src = find(uuid, str(meta.get("cwd") or ""), config=config)
    base = (config or config_dir()) / "projects"
    if src is None:
        return {"transcript": None, "transcript_note": f"no {uuid or '?'}.jsonl under {base}"}
    try:
        copy_regular(src, sdir / NAME)
    except OSError as exc:
        return {"transcript": None, "transcript_note": f"copy of {src} failed: {exc}"}
    out: dict[str, Any] = {"transcript": NAME, "transcript_bytes": (sdir / NAME).stat().st_size,
                           "transcript_at": src.relative_to(base).as_posix()}
    out.update(keep_subagents(src, sdir))
    return out


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def keep_subagents(src: Path, sdir: Path) -> dict[str, Any]:
    """The conversation's subagents' transcripts (<uuid>/subagents/*.jsonl beside it) to
    sdir/subagents/, where ccusage-style counting (cost --transcripts) finds them as the
    session's: regular files only, never through a link; what failed is named."""
    where = src.parent / src.stem / "subagents"
    if not all(_real_dir(d) for d in (where.parent, where)):
        return {}  # none, or reached through a link (which could lead anywhere)
    found = sorted(where.glob("*.jsonl"))
    if not found:
        return {}
    dest = sdir / SUBAGENTS
    kept, failed = 0, []
    try:
        dest.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        return {"transcript_subagents": 0, "transcript_subagents_note": f"cannot make {dest}: {exc}"}
    for p in found:
        try:
            copy_regular(p, dest / p.name)
            kept += 1
        except OSError as exc:
            failed.append(f"{p.name}: {exc}")
    note = {"transcript_subagents_note": "; ".join(failed)[:1000]} if failed else {}
    return {"transcript_subagents": kept, **note}
