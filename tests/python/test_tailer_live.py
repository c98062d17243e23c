"""The tailer under truncation and rotation, the fuzzed parser, the live state on
the reference runs, and the fast scan against the line-by-line one."""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path

import orjson
import pytest
from harness.pipeline import receipt, record
from harness.pipeline.verdict import Verdict
from harness.sidecar.live import Limits, LiveSession
from harness.stream import facts, fastscan
from harness.stream.jsonl import LineStats, iter_events, parse_line
from harness.stream.tailer import Tailer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gen_stream


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _lines(n: int, start: int = 0) -> bytes:
    return b"".join(orjson.dumps({"type": "x", "i": i}) + b"\n" for i in range(start, start + n))


def test_tailer_reads_only_complete_lines_and_holds_the_partial_one(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    t = Tailer(p)
    assert t.read() == []  # no file yet
    _append(p, b'{"a":1}\n{"b":')
    assert t.read() == [b'{"a":1}']
    _append(p, b"2}\n")
    assert t.read() == [b'{"b":2}']
    _append(p, b'{"c":3}')
    assert t.read() == []
    assert t.flush() == [b'{"c":3}']
    t.close()


def test_truncate_and_rotate_under_the_tailer_count_every_line_once(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    t = Tailer(p)
    seen: list[int] = []

    def drain() -> None:
        while True:
            got = t.read(max_bytes=64)  # small reads: boundaries fall mid-line
            if not got:
                return
            seen.extend(orjson.loads(line)["i"] for line in got)

    _append(p, _lines(10))
    drain()
    # truncation: the file starts again; what was read is not read twice
    with open(p, "wb"):
        pass
    _append(p, _lines(5, 10))
    drain()
    # rotation: lines written to the old file after the rename are still read, once
    os.rename(p, tmp_path / "events.jsonl.1")
    _append(tmp_path / "events.jsonl.1", _lines(3, 15))
    _append(p, _lines(4, 18))
    drain()
    _append(p, _lines(2, 22))
    drain()
    t.close()
    assert seen == list(range(24))
    assert (t.stats.truncations, t.stats.rotations) == (1, 1)


def test_the_tailer_copes_with_huge_lines_and_nul_bytes(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    big = b'{"type":"x","text":"' + b"a" * (5 << 20) + b'"}\n'
    _append(p, b"\x00\x00\n" + big + b"\xff\xfe\n")
    t = Tailer(p)
    got: list[bytes] = []
    while True:
        chunk = t.read()
        if not chunk:
            break
        got.extend(chunk)
    t.close()
    assert [len(g) for g in got] == [2, len(big) - 1, 2]
    assert [parse_line(g) is not None for g in got] == [False, True, False]


def test_fuzz_the_parser_never_raises(tmp_path: Path) -> None:
    rng = random.Random(1234)
    valid = (Path(__file__).parent / "fixtures" / "reference" / "ok.jsonl").read_bytes().splitlines()
    chunks: list[bytes] = []
    for _ in range(400):
        kind = rng.randrange(6)
        if kind == 0:
            chunks.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        elif kind == 1:
            line = rng.choice(valid)
            chunks.append(line[: rng.randrange(len(line))])  # truncated JSON
        elif kind == 2:
            chunks.append(b'{"type":"assistant","message":' + b"\xc3\x28\xa0\xa1" + b"}")  # invalid UTF-8
        elif kind == 3:
            chunks.append(b'{"type":"user","message":{"content":"' + b"\x00" * 100 + b'"}}')
        elif kind == 4:
            chunks.append(rng.choice(valid))
        else:
            chunks.append(b'[1,2]\n{"type":null}\n"str"\n{"type":"result","subtype":7,"usage":"x"}')
    chunks.append(b'{"type":"system","text":"' + b"z" * (5 << 20) + b'"}')  # a 5 MB line
    p = tmp_path / "fuzz.jsonl"
    p.write_bytes(b"\n".join(chunks))
    f = facts.scan(p)
    assert f.stats.malformed > 0
    m = receipt.build(record.read(tmp_path, f, {}), Verdict("crashed", "fuzz"))
    assert m["malformed_lines"] == f.stats.malformed
    live = LiveSession("ses_fuzz", Limits(5, 10))
    for line in p.read_bytes().split(b"\n"):
        live.feed_line(line, 1.0, 1.0)
    assert live.facts.stats.malformed >= f.stats.malformed - 1


@pytest.mark.parametrize(
    "name, phase, outstanding",
    [("slowtool", "idle", 0), ("hang_default", "idle", 0), ("ok", "idle", 0), ("err529_r2", "idle", 0)],
)
def test_live_state_on_reference_runs_matches_the_result_line(reference: Path, name: str, phase: str, outstanding: int) -> None:
    live = LiveSession("ses_x", Limits(300, 660))
    for line in (reference / f"{name}.jsonl").read_bytes().splitlines():
        live.feed_line(line, 1.0, 1.0)
    assert live.phase == phase
    assert len(live.tools) == outstanding
    slow = facts.scan(reference / f"{name}.jsonl")
    assert live.facts.tool_calls == slow.tool_calls
    assert live.facts.events == slow.events
    assert live.facts.api_retries == slow.api_retries


def test_live_phases_through_a_tool_call(reference: Path) -> None:
    """The slowtool run: in_tool while the Bash call is outstanding, with its allowance."""
    live = LiveSession("ses_x", Limits(stall_s=3, tool_s=99))
    phases = []
    for line in (reference / "slowtool.jsonl").read_bytes().splitlines():
        live.feed_line(line, 1.0, 1.0)
        phases.append(live.phase)
        if live.tools:
            call = next(iter(live.tools.values()))
            assert (call.name, call.allowance_s) == ("Bash", 99)
            assert live.silence(10.0, 0.0) == (9.0, 99, "tool")
    assert "in_tool" in phases and "requesting" in phases and "streaming" not in phases
    assert live.silence(10.0, 0.0) == (9.0, 3, "stream")


def test_a_bash_timeout_sets_the_tool_allowance() -> None:
    live = LiveSession("ses_x", Limits(stall_s=5, tool_s=60))
    line = orjson.dumps({"type": "assistant", "message": {"id": "m1", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "make", "timeout": 300000}}]}})
    live.feed_line(line, 1.0, 1.0)
    assert live.tools["t1"].allowance_s == 305


def test_fast_scan_agrees_with_the_line_by_line_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "events.jsonl"
    gen_stream.write(str(p), 3 << 20, seed=3)
    monkeypatch.setattr(fastscan, "FAST_MIN_BYTES", 1)
    fast = facts.scan(p)
    monkeypatch.setattr(fastscan, "FAST_MIN_BYTES", 1 << 60)
    slow = facts.scan(p)
    assert fast.fast and not slow.fast
    v = Verdict("succeeded", "x")
    mf, ms = receipt.build(record.read(tmp_path, fast, {}), v), receipt.build(record.read(tmp_path, slow, {}), v)
    for key in ("turns", "tokens", "cost_usd", "tool_calls", "tool_errors", "api_retries", "compactions"):
        assert mf[key] == ms[key], key
    assert fast.last_assistant_text[-200:] == slow.last_assistant_text[-200:]
    # one worker or two: the same facts
    receipts = []
    for workers in (1, 2):
        f = facts.SessionFacts()
        for ev in fastscan.events(p, workers=workers)[0]:
            facts.feed(f, ev)
        r = receipt.build(record.read(tmp_path, f, {}), v)
        r.pop("events")  # each half keeps its own last text line: a count that differs by design
        receipts.append(r)
    assert receipts[0] == receipts[1]


def test_fast_scan_without_a_result_estimates_from_streamed_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "events.jsonl"
    gen_stream.write(str(p), 1 << 20, seed=5)
    data = p.read_bytes()
    p.write_bytes(data[: data.rindex(b'{"type":"result"')] + b'{"type":"assist')  # died mid-line
    monkeypatch.setattr(fastscan, "FAST_MIN_BYTES", 1)
    fast = facts.scan(p)
    monkeypatch.setattr(fastscan, "FAST_MIN_BYTES", 1 << 60)
    slow = facts.scan(p)
    assert fast.result is None and fast.stats.partial_tail
    assert facts.estimate_cost_usd(fast.messages, "opus") == facts.estimate_cost_usd(slow.messages, "opus") > 0


def test_reference_streams_read_line_by_line_never_lose_a_line(reference: Path, tmp_path: Path) -> None:
    for src in sorted(reference.glob("*.jsonl")):
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        stats = LineStats()
        n = sum(1 for _ in iter_events(dst, stats))
        t = Tailer(dst)
        got = t.read() + t.flush()
        t.close()
        assert len(got) == stats.lines and n == stats.lines - stats.malformed


def _fed(*lines: dict[str, object]) -> LiveSession:
    live = LiveSession("ses_x", Limits(stall_s=3, tool_s=99))
    for line in lines:
        live.feed_line(orjson.dumps(line), 1.0, 1.0)
    return live


def test_a_message_to_the_model_means_it_is_asked_next() -> None:
    """A user line of any content (not only tool results) after the model stopped: requesting."""
    stop = {"type": "stream_event", "event": {"type": "message_stop"}}
    text = {"type": "user", "message": {"content": [{"type": "text", "text": "go on"}]}}
    assert _fed(stop).phase == "idle"
    assert _fed(stop, text).phase == "requesting"


def test_a_second_result_of_a_call_is_its_tool_s_error_too(tmp_path: Path) -> None:
    use = {"type": "assistant", "message": {"id": "m1", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "x"}}]}}
    err = {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True}]}}
    (tmp_path / "events.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in (use, err, err)))
    assert dict(facts.scan(tmp_path / "events.jsonl").tool_errors) == {"Bash": 2}


def test_the_full_scan_counts_whole_deltas_and_a_cut_last_line_as_malformed(tmp_path: Path) -> None:
    delta = b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}}'
    (tmp_path / "events.jsonl").write_bytes(delta + b"\n" + delta + b"\n" + delta[:40])
    f = facts.scan(tmp_path / "events.jsonl")
    assert (f.events, f.stats.lines, f.stats.malformed, f.stats.partial_tail) == (2, 3, 1, True)
