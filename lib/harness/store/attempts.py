"""Attempts: one per session, its receipt (sessions/<id>/metrics.json) as a row.

The columns a report reads (ATTEMPT_COLUMNS) come out of the receipt here, for
both backends: the SQLite store keeps them in its attempts table (written when a
session is finalized, rebuilt by reindex); the files backend reads the receipt
files each time. The receipt file stays the record; a row can always be made again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness import jsonio

ATTEMPT_COLUMNS = ("session_id", "item_id", "run", "attempt", "verdict", "model", "started", "ended", "wall_s",
                   "ttft_s", "turns", "cost_usd", "cost_estimated", "input", "output", "cache_read", "cache_write",
                   "fix_round", "verify_s", "claim_s", "retries")
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


def _epoch(text: Any) -> float | None:
    try:
        return jsonio.parse_iso(str(text)).timestamp() if text else None
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def row(receipt: dict[str, Any]) -> dict[str, Any]:
    """The receipt's numbers a report reads, by column."""
    tokens = receipt.get("tokens") if isinstance(receipt.get("tokens"), dict) else {}
    assert isinstance(tokens, dict)
    turns, attempt = _num(receipt.get("turns")), _num(receipt.get("attempt"))
    out: dict[str, Any] = {
        "session_id": str(receipt.get("session_id") or ""),
        "item_id": receipt.get("item_id"),
        "run": receipt.get("run"),
        "attempt": int(attempt) if attempt is not None else None,
        "verdict": receipt.get("verdict"),
        "model": receipt.get("model") or None,
        "started": _epoch(receipt.get("started_at")),
        "ended": _epoch(receipt.get("ended_at")),
        "wall_s": _num(receipt.get("wall_s")),
        "ttft_s": _num(receipt.get("ttft_s")),
        "turns": int(turns) if turns is not None else None,
        "cost_usd": _num(receipt.get("cost_usd")) or 0.0,
        "cost_estimated": int(bool(receipt.get("cost_estimated"))),
        "fix_round": int(fix_round) if (fix_round := _num(receipt.get("fix_round"))) is not None else None,
        "verify_s": _num(verify.get("seconds")) if isinstance(verify := receipt.get("verify"), dict) else None,
        "claim_s": _num(receipt.get("claim_to_exec_s")),
        "retries": jsonio.dumps(retries).decode() if isinstance(retries := receipt.get("api_retries"), dict)
        and retries else None,  # {"529": 3}: the API retries by HTTP status, as JSON
    }
    for kind in TOKEN_KINDS:
        out[kind] = int(_num(tokens.get(kind)) or 0)
    return out


def receipts(state_dir: Path, skipped: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every finalized session's receipt under state/sessions/; an unreadable one is
    skipped and named in skipped (a line for the person who asked)."""
    root = state_dir / "sessions"
    try:
        names = sorted(p.name for p in root.iterdir())
    except FileNotFoundError:
        return
    for name in names:
        path = root / name / "metrics.json"
        try:
            doc = jsonio.read_json(path)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            if skipped is not None:
                skipped.append(f"{path}: unreadable receipt ({exc})")
            continue
        if isinstance(doc, dict):
            doc.setdefault("session_id", name)  # the directory names the session
            yield doc
        elif skipped is not None:
            skipped.append(f"{path}: not a JSON object")


def selected(r: dict[str, Any], since: float | None, run: str | None) -> bool:
    """Whether a row is in a report's window (started at or after since) and run."""
    if run is not None and r.get("run") != run:
        return False
    if since is not None:
        started = r.get("started")
        return started is not None and started >= since
    return True


def from_files(state_dir: Path, since: float | None = None, run: str | None = None,
               skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows read from the receipt files (the files backend, and the baseline of the
    report benchmark)."""
    return [r for r in map(row, receipts(state_dir, skipped)) if selected(r, since, run)]


class ReceiptFiles:
    """Attempts as the files backend keeps them: the receipt files themselves."""

    state_dir: Path

    def record_attempt(self, receipt: dict[str, Any]) -> None:
        """Nothing more to write: the receipt file is the record."""

    def attempts(self, since: float | None = None, run: str | None = None,
                 skipped: list[str] | None = None) -> list[dict[str, Any]]:
        return from_files(self.state_dir, since, run, skipped)
