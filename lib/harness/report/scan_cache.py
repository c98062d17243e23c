"""What each transcript held the last time `cost --transcripts` read it, so that the
next run reads only what was appended (transcripts only grow) and nothing of a file
that did not change.

One file per transcripts directory, under $XDG_CACHE_HOME/harness (else
~/.cache/harness), 0600 in a 0700 directory: for each transcript its inode, size,
mtime, how far it was read (the end of its last whole line), digests of its
first bytes and of those just before that end, and the usage entries of the lines up to there (token counts, ids,
model names and timestamps: nothing of the conversation). A file whose inode,
size and mtime are unchanged is not opened; one that grew, and still holds the
same bytes at its start and just before where the last run stopped, is read from
there; anything else (rewritten in place, truncated, replaced) is read again whole. An unreadable or foreign cache is
ignored and rewritten; one that cannot be written is said on stderr, and the
report is right either way.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness import jsonio
from harness.report import transcripts
from harness.report.transcripts import Entry

VERSION = 2
HEAD_BYTES = 4096
EDGE_BYTES = 256
Scanned = tuple[list[Entry], int]  # a file's entries, and its malformed lines


def default_path(root: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return base / f"transcript-cost-{key}.json"


def rows(entries: list[Entry]) -> list[list[Any]]:
    return [[getattr(e, s) for s in Entry.__slots__] for e in entries]


@dataclass
class Plan:
    """What one file needs: nothing (unchanged: its cached entries are all), its tail
    from `start`, or all of it (start 0)."""

    start: int
    kept: list[Entry]
    kept_bad: int
    head: str
    st: os.stat_result | None
    unchanged: bool = False
    edge: str = ""  # the digest of the bytes just before start: the file up to there is the one cached


@dataclass
class Part:
    """What a read found: the entries of the whole lines from `start` on, and of the
    unterminated last line (not cached: it is still being written)."""

    start: int  # 0 when the file had to be read whole after all
    done: list[Entry]
    bad: int
    tail: list[Entry]
    tail_bad: int
    upto: int
    head: str
    edge: str = ""

    def encode(self) -> list[Any]:
        return [self.start, rows(self.done), self.bad, rows(self.tail), self.tail_bad, self.upto, self.head, self.edge]

    @classmethod
    def decode(cls, v: list[Any]) -> Part:
        return cls(v[0], [Entry(*r) for r in v[1]], v[2], [Entry(*r) for r in v[3]], v[4], v[5], v[6], v[7])


def _head(data: bytes) -> str:
    """The digest of a file's first bytes, with how many: "<n>:<sha256>"."""
    return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"


def _head_len(head: str) -> int:
    n = head.split(":", 1)[0]
    return int(n) if n.isdigit() else 0


def _edge(fh: Any, upto: int) -> str:
    """The digest of the EDGE_BYTES before upto (the end of the last line read)."""
    lo = max(0, upto - EDGE_BYTES)
    fh.seek(lo)
    return _head(fh.read(upto - lo))


def read(path: Path, session: str, plan: Plan, dates: dict[str, bool]) -> Part:
    """The entries appended since plan.start (all of them when the file is not the one cached:
    its first bytes or those just before plan.start differ)."""
    start = plan.start
    try:
        with open(path, "rb", opener=regular_only) as fh:
            if start and (_head(fh.read(_head_len(plan.head))) != plan.head or _edge(fh, start) != plan.edge):
                start = 0  # not the file it was: read whole
            fh.seek(start)
            data = fh.read()
            cut = data.rfind(b"\n") + 1
            edge = _edge(fh, start + cut) if cut else plan.edge
    except OSError:
        return Part(0, [], 0, [], 0, 0, "")  # gone since the walk, unreadable, not a file: no entries
    done, bad = transcripts.scan(data[:cut], session, dates)
    tail, tail_bad = transcripts.scan(data[cut:], session, dates) if cut < len(data) else ([], 0)
    head = plan.head if start else _head(data[:min(HEAD_BYTES, cut)])
    return Part(start, done, bad, tail, tail_bad, start + cut, head, edge)


def regular_only(path: str, flags: int) -> int:
    """Opens a regular file only (a FIFO named *.jsonl must not hang the report)."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return fd


class ScanCache:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.old: dict[str, Any] = {}
        self.new: dict[str, Any] = {}
        self.reused = self.tails = self.whole = 0
        if path is not None:
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                data = None
            if isinstance(data, dict) and data.get("version") == VERSION and isinstance(data.get("files"), dict):
                self.old = data["files"]

    def plan(self, path: Path) -> Plan:
        try:
            st = os.stat(path)
        except OSError:
            return Plan(0, [], 0, "", None)
        c = self.old.get(str(path))
        whole = Plan(0, [], 0, "", st)
        if not isinstance(c, dict) or (c.get("dev"), c.get("ino")) != (st.st_dev, st.st_ino):
            return whole
        same = c.get("size") == st.st_size and c.get("mtime_ns") == st.st_mtime_ns and c.get("upto") == st.st_size
        if not same and not (isinstance(c.get("size"), int) and st.st_size > c["size"] >= int(c.get("upto", -1)) > 0):
            return whole  # changed, but not by growing: rewritten in place, or truncated
        try:
            plan = Plan(int(c["upto"]), [Entry(*r) for r in c["entries"]], int(c.get("bad", 0)), str(c["head"]), st,
                        same, str(c.get("edge", "")))
        except (TypeError, KeyError, ValueError):
            return whole  # a record this release did not write
        if same:
            self.new[str(path)] = c
            self.reused += 1
        return plan

    def take(self, path: Path, plan: Plan, part: Part) -> Scanned:
        """The file's entries (the cached ones and the new), and its record for the next run."""
        kept, kept_bad = (plan.kept, plan.kept_bad) if part.start else ([], 0)
        if part.start:
            self.tails += 1
        else:
            self.whole += 1
        st = plan.st
        if st is not None and part.upto:
            self.new[str(path)] = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                   "upto": part.upto, "head": part.head, "edge": part.edge,
                                   "bad": kept_bad + part.bad, "entries": rows(kept + part.done)}
        return kept + part.done + part.tail, kept_bad + part.bad + part.tail_bad

    def save(self) -> None:
        """The records of this run's files (those gone since are dropped); not rewritten
        when nothing changed."""
        if self.path is None or (not self.tails and not self.whole and self.new.keys() == self.old.keys()):
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            jsonio.write_atomic(self.path, orjson.dumps({"version": VERSION, "files": self.new}), durable=False)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            print(f"harness: cost: cannot write the scan cache {self.path}: {exc} (the report is complete)",
                  file=sys.stderr)
