"""The CLI's own transcript of a session, kept in its session directory.

Claude Code writes each conversation to <config>/projects/<project>/<uuid>.jsonl
(<config>: CLAUDE_CONFIG_DIR, else ~/.claude; <project>: the working directory,
every character but letters and digits made '-') and deletes files older than its
cleanupPeriodDays (30 by default). At a session's end the harness copies it to
transcript.jsonl beside the stream, where retention (loopctl.sh gc) and the
receipts' reconciliation find it. A fix round resumes the same conversation, so
its copy holds the rounds before it too.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NAME = "transcript.jsonl"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    given = env.get("CLAUDE_CONFIG_DIR")
    return Path(given) if given else Path(env.get("HOME") or "~").expanduser() / ".claude"


def find(uuid: str, cwd: str, env: Mapping[str, str] | None = None) -> Path | None:
    """The conversation's file: in the project directory of its working directory, else
    in any project directory (the CLI's naming of it has changed before)."""
    if not UUID.match(uuid):
        return None
    projects = config_dir(env) / "projects"
    if cwd:
        direct = projects / re.sub(r"[^A-Za-z0-9]", "-", cwd) / f"{uuid}.jsonl"
        if direct.is_file():
            return direct
    return next((p for p in projects.glob(f"*/{uuid}.jsonl") if p.is_file()), None)


def keep(sdir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Copies the session's transcript into sdir (write then rename, mode 0600); answers
    what meta.json records of it: the copy's name and size, or why there is none."""
    uuid = str(meta.get("claude_session_id") or "")
    src = find(uuid, str(meta.get("cwd") or ""))
    if src is None:
        return {"transcript": None, "transcript_note": f"no {uuid or '?'}.jsonl under {config_dir() / 'projects'}"}
    tmp = sdir / f".{NAME}.tmp"
    try:
        with open(src, "rb") as fin, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.replace(tmp, sdir / NAME)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return {"transcript": None, "transcript_note": f"copy of {src} failed: {exc}"}
    return {"transcript": NAME, "transcript_bytes": (sdir / NAME).stat().st_size}
