"""JSON in and out with orjson, and atomic file writes (temp file + rename)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FILE_MODE = 0o600


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(obj: Any, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj, option=option)


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, "rb") as fh:
        return orjson.loads(fh.read())


def read_dict(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from path; None when the file is missing, unreadable or not an object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_atomic(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> None:
    """Writes data to path so that a reader sees the old file or the new one, never a part.

    The temp file lives in the same directory (rename(2) is atomic there) and is
    created 0600. With durable, the data reaches the disk before the rename.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=target.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], obj: Any, pretty: bool = True) -> None:
    write_atomic(path, dumps(obj, pretty=pretty) + b"\n")


def create_once(path: str | os.PathLike[str], data: bytes) -> bool:
    """Writes path whole unless it exists: True when this call created it (link(2)
    never replaces, so of two creators exactly one wins)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def append_line(path: str | os.PathLike[str], data: bytes) -> None:
    """Appends one whole line with a single O_APPEND write (concurrent writers never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def audit(state_dir: str | os.PathLike[str], event: str, **fields: Any) -> None:
    """One line in state/events.jsonl, the harness audit log. Raises OSError when it cannot."""
    append_line(Path(state_dir) / "events.jsonl", audit_line(event, **fields) + b"\n")


def audit_line(event: str, **fields: Any) -> bytes:
    """One audit event as its line (no newline)."""
    return dumps({"ts": utc_now_iso(), "event": event, **fields})


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """Parses an ISO 8601 time; a time without a zone is taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
