"""The usage entries that count, after ccusage's deduplication.

The rules are ccusage 20.0.24's (rust/adapters/claude/src/lib.rs push_deduped_entry,
should_replace_deduped_entry; checked against the binary by
tests/python/test_transcript_cost.py). Entries are taken in order (files by path,
lines in file order):

- An entry without a message id always counts.
- Two entries are one response when their message id and request id are equal, in
  whichever session or file; without a request id, when their message id and session
  (the line's sessionId, else its path's) are equal.
- A sidechain replay (a subagent's or /btw log copying a parent message under a new
  request id) is the same response when its message id, session and timestamp are
  the kept entry's, and one of the two is a sidechain entry.
- Of one response's entries, one counts: the one not on a sidechain, else the one
  with the most tokens (all four kinds), else the one with usage.speed, else the
  first; the kept entry takes the place (and the session) of the one it replaces.
"""

from __future__ import annotations

from harness.report.transcripts import Entry, ts_ms


def replaces(new: Entry, old: Entry) -> bool:
    if new.sidechain != old.sidechain:
        return old.sidechain
    if new.total != old.total:
        return new.total > old.total
    return new.speed and not old.speed


class Ledger:
    """Entries kept so far; add() them in order."""

    def __init__(self) -> None:
        self.kept: list[Entry] = []
        self.duplicates = 0
        self._exact: dict[tuple[str, str, str | None], list[int]] = {}
        self._by_message: dict[tuple[str, str], list[int]] = {}

    def _exact_key(self, e: Entry) -> tuple[str, str, str | None]:
        assert e.message_id is not None
        if e.request_id is not None:
            return e.message_id, e.request_id, None
        return e.message_id, "", e.session_id

    def _index(self, i: int) -> None:
        e = self.kept[i]
        assert e.message_id is not None
        for slots in (self._exact.setdefault(self._exact_key(e), []),
                      self._by_message.setdefault((e.message_id, e.session_id), [])):
            if i not in slots:
                slots.append(i)

    def _find(self, e: Entry) -> int | None:
        kept, mid = self.kept, e.message_id
        for i in self._exact.get(self._exact_key(e), ()):
            k = kept[i]
            if k.message_id == mid and k.request_id == e.request_id and (
                    e.request_id is not None or k.session_id == e.session_id):
                return i
        for i in self._by_message.get((str(mid), e.session_id), ()):
            k = kept[i]
            if k.message_id == mid and k.session_id == e.session_id and (e.sidechain or k.sidechain) and (
                    k.ts == e.ts or ts_ms(k.ts) == ts_ms(e.ts)):
                return i
        return None

    def add(self, e: Entry) -> None:
        if e.message_id is None:
            self.kept.append(e)
            return
        i = self._find(e)
        if i is None:
            self.kept.append(e)
            self._index(len(self.kept) - 1)
            return
        self.duplicates += 1
        if replaces(e, self.kept[i]):
            self.kept[i] = e
            self._index(i)
