"""The stream-json reader never raises, whatever the file holds."""

from __future__ import annotations

import random
from pathlib import Path

from harness.stream import facts
from harness.stream.jsonl import LineStats, iter_events


def test_malformed_partial_nul_and_invalid_utf8_are_counted_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    p.write_bytes(
        b'{"type":"system","subtype":"init"}\n'
        b"not json\n"
        b'\x00\xff\xfe{"a":\n'
        b"[1,2,3]\n"
        b'{"type":"result","subtype":"success","is_error":false}\n'
        b'{"type":"assist'
    )
    stats = LineStats()
    events = list(iter_events(p, stats))
    assert [e["type"] for e in events] == ["system", "result"]
    assert stats.malformed == 4
    assert stats.partial_tail is True


def test_fuzz_never_raises(tmp_path: Path) -> None:
    rng = random.Random(1234)
    good = (Path(__file__).parent / "fixtures" / "reference" / "partial.jsonl").read_bytes()
    p = tmp_path / "events.jsonl"
    for _ in range(200):
        data = bytearray(good)
        for _ in range(rng.randint(1, 40)):
            pos = rng.randrange(len(data))
            data[pos : pos + rng.randint(0, 30)] = rng.randbytes(rng.randint(0, 30))
        if rng.random() < 0.1:
            data += b'{"x":"' + b"y" * (5 * 1024 * 1024)
        p.write_bytes(bytes(data))
        f = facts.scan(p)
        assert f.events + f.stats.malformed == f.stats.lines


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert list(iter_events(tmp_path / "nope.jsonl")) == []
