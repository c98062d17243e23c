"""Claude Code's transcripts read as ccusage reads them: which lines are usage
entries, and what each holds.

The CLI writes each conversation to <config>/projects/<project>/<uuid>.jsonl (a
subagent's to <project>/<uuid>/subagents/*.jsonl), compact JSON, one line per
content block of a response, each with the response's usage. A line is a usage
entry when it holds the bytes `"usage":{` and passes ccusage 20.0.24's schema
(rust/adapters/claude/src/lib.rs read_usage_file, is_valid_usage_entry,
has_unsupported_null_field; ccusage-core types.rs UsageEntry):

- it parses as a JSON object whose "timestamp" is an RFC 3339 time with whole or
  millisecond seconds and Z or +HH:MM (parse_ts_timestamp), and whose "message"
  holds "usage" with input_tokens and output_tokens (non-negative integers; the
  cache counts 0 when absent);
- none of id, cwd, model, speed, costUSD, version, sessionId, requestId,
  isApiErrorMessage, cache_read_input_tokens, cache_creation_input_tokens is
  written as null anywhere in the line (a null model inside usage.iterations is
  allowed);
- a version, when there is one, starts like 1.2.3; sessionId, requestId,
  message.id and message.model, when there, are not empty.

Anything else is skipped, as ccusage skips it; a line holding `"usage":{` that is
not JSON at all (a truncated write) is counted as malformed. The cache write count
is usage.cache_creation's 5-minute plus 1-hour tokens when that breakdown is there,
else cache_creation_input_tokens (TokenUsageRaw::cache_creation_token_count).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

USAGE_MARK = b'"usage":{'
NULL_MARK = b'":null'
# written as null, these make ccusage skip the line
NULL_KEYS = frozenset((b"id", b"cwd", b"model", b"speed", b"costUSD", b"version", b"sessionId", b"requestId",
                       b"isApiErrorMessage", b"cache_read_input_tokens", b"cache_creation_input_tokens"))
TS_SHAPE = re.compile(r"(\d{4}-\d\d-\d\d)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3})?(?:Z|[+-]\d\d:\d\d)")
TS_RE = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?(?:Z|([+-])(\d\d):(\d\d))")
SEMVER_RE = re.compile(r"\d+\.\d+\.\d")
SYNTHETIC_MODEL = "<synthetic>"
TRANSCRIPT_NAME = "transcript.jsonl"  # the harness's copy in a session directory
SPEEDS = ("standard", "fast")
MS_PER_DAY = 86_400_000


@dataclass(slots=True)
class Entry:
    """One usage line: its dedup identity, then what it adds to its session."""

    message_id: str | None
    request_id: str | None
    session_id: str  # the line's sessionId, else the session its path names
    ts: str  # as written; ts_ms() reads it
    sidechain: bool
    total: int  # all four token counts: the largest of duplicates wins
    speed: bool  # usage.speed is there (a tie-break between duplicates)
    model: str | None  # None for none, and for the CLI's own <synthetic> messages
    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int  # of cache_write: priced at twice the input rate
    cost_usd: float | None  # the line's costUSD (older CLIs wrote it)
    fast: bool  # usage.speed is "fast"
    where: int = 0  # the index of its file's session (Scan.sessions)


def ts_ms(ts: str) -> int:
    """Epoch milliseconds of a timestamp that entry() accepted."""
    m = TS_RE.fullmatch(ts)
    assert m is not None
    ms = ((date.fromisoformat(m[1]).toordinal() - 719_163) * MS_PER_DAY
          + ((int(m[2]) * 60 + int(m[3])) * 60 + int(m[4])) * 1000 + int(m[5] or 0))
    if m[6]:
        offset = (int(m[7]) * 60 + int(m[8])) * 60_000
        ms += -offset if m[6] == "+" else offset
    return ms


def has_null_field(line: bytes, usage: dict[str, Any]) -> bool:
    """A key of NULL_KEYS written as null; a null "model" of usage.iterations is
    allowed (as many as that list holds)."""
    allowed = -1
    i = line.find(NULL_MARK)
    while i >= 0:
        key = line[line.rfind(b'"', 0, i) + 1 : i]
        if key in NULL_KEYS:
            if key != b"model":
                return True
            if allowed < 0:
                its = usage.get("iterations")
                allowed = sum(1 for it in its if type(it) is dict and it.get("model", 0) is None) \
                    if type(its) is list else 0
            if allowed == 0:
                return True
            allowed -= 1
        i = line.find(NULL_MARK, i + len(NULL_MARK))
    return False


def _split(usage: dict[str, Any], cw: int) -> tuple[int, int] | None:
    """(cache write, of which 1-hour): usage.cache_creation's split when there is one."""
    split = usage.get("cache_creation")
    if split is None:
        return cw, 0
    if type(split) is not dict:
        return None
    five, hour = split.get("ephemeral_5m_input_tokens", 0), split.get("ephemeral_1h_input_tokens", 0)
    if type(five) is not int or type(hour) is not int or five < 0 or hour < 0:
        return None
    return five + hour, hour


def _bad_text(v: Any) -> bool:
    """An optional string field ccusage refuses: not a string, or empty."""
    return v is not None and (type(v) is not str or not v)


def _bad_extras(obj: dict[str, Any]) -> bool:
    """The rarer optional fields ccusage types: booleans, a number, strings."""
    v = obj.get("isApiErrorMessage")
    if v is not None and type(v) is not bool:
        return True
    v = obj.get("costUSD")
    if v is not None and type(v) is not int and type(v) is not float:
        return True
    return any(obj.get(k) is not None and type(obj[k]) is not str for k in ("attributionPlugin", "attributionSkill"))


def _date_ok(ts: str, dates: dict[str, bool]) -> bool:
    """A timestamp of ccusage's shape on a day that exists (dates memoizes the days)."""
    m = TS_SHAPE.fullmatch(ts)
    if m is None:
        return False
    ok = dates.get(m[1])
    if ok is None:
        try:
            ok = dates[m[1]] = date.fromisoformat(m[1]).year > 0
        except ValueError:
            ok = dates[m[1]] = False
    return ok


def entry(obj: Any, line: bytes, session_id: str, dates: dict[str, bool]) -> Entry | None:
    """The usage entry of one parsed line, or None when ccusage would skip it."""
    try:
        msg, ts = obj["message"], obj["timestamp"]
        usage = msg["usage"]
        inp, out = usage["input_tokens"], usage["output_tokens"]
        get, mget = obj.get, msg.get
    except (KeyError, TypeError, IndexError, AttributeError):
        return None
    cr, cw = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    if (type(inp) is not int or type(out) is not int or type(cr) is not int or type(cw) is not int
            or min(inp, out, cr, cw) < 0 or type(ts) is not str or not _date_ok(ts, dates)):
        return None
    sid, req, side, version, mid, model = (get("sessionId"), get("requestId"), get("isSidechain"), get("version"),
                                          mget("id"), mget("model"))
    speed, split = usage.get("speed"), _split(usage, cw)
    if (split is None or (speed is not None and speed not in SPEEDS) or _bad_text(sid) or _bad_text(req)
            or _bad_text(mid) or _bad_text(model) or (side is not None and type(side) is not bool)
            or (version is not None and (type(version) is not str or not SEMVER_RE.match(version)))
            or _bad_extras(obj) or has_null_field(line, usage)):
        return None
    cost = get("costUSD")
    return Entry(mid, req, sid or session_id, ts, side is True, inp + out + cr + split[0], speed is not None,
                 None if model == SYNTHETIC_MODEL else model, inp, out, cr, split[0], split[1],
                 None if cost is None else float(cost), speed == "fast")


def scan(data: bytes, session_id: str, dates: dict[str, bool]) -> tuple[list[Entry], int]:
    """The usage entries of a transcript's bytes, in order; and how many lines
    holding usage were not JSON."""
    out: list[Entry] = []
    malformed = 0
    i = data.find(USAGE_MARK)
    while i >= 0:
        start = data.rfind(b"\n", 0, i) + 1
        end = data.find(b"\n", i)
        if end < 0:
            end = len(data)
        line = data[start:end]
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            malformed += 1
        else:
            e = entry(obj, line, session_id, dates)
            if e is not None:
                out.append(e)
        i = data.find(USAGE_MARK, end)
    return out, malformed


def session_of(path: Path, root: Path) -> tuple[str, str]:
    """(project, session) a transcript's path names, as ccusage names them
    (extract_session_parts): below the path's "projects" directory, <project>/<session>.jsonl,
    <project>/<session>/subagents/<file>.jsonl, else the file's directory is the session.
    A path without a "projects" directory is taken from root's parent down (root: one
    project's directory, or a tree of session directories), and a harness copy
    (<session>/transcript.jsonl) is its session directory's."""
    parts = path.parts
    if "projects" in parts:
        rel = parts[parts.index("projects") + 1 :]
    else:
        rel = path.relative_to(root.parent).parts if path != root else (root.parent.name, root.name)
        if len(rel) >= 2 and rel[-1] == TRANSCRIPT_NAME:
            return os.sep.join(rel[:-2]) or root.parent.name, rel[-2]
    stem = rel[-1][: -len(".jsonl")] if rel and rel[-1].endswith(".jsonl") else ""
    if len(rel) == 2 and stem:
        return rel[0], stem
    if len(rel) >= 4 and rel[-2] == "subagents":
        return os.sep.join(rel[:-3]) or "Unknown Project", rel[-3]
    session = rel[-2] if len(rel) >= 2 else "unknown"
    return (os.sep.join(rel[:-2]) if len(rel) > 2 else "Unknown Project"), session


def files(root: Path) -> list[Path]:
    """Every *.jsonl under root (root itself when it is one), in ccusage's order: by path."""
    if root.is_file():
        return [root]
    found = [Path(d) / f for d, _, names in os.walk(root, followlinks=True) for f in names if f.endswith(".jsonl")]
    return sorted(found, key=str)
