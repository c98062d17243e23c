"""Verdicts and receipts on the real CLI's output: tests/python/fixtures/reference
(CLI 2.1.197, the pinned one) and tests/python/fixtures/reference-2.1.332 (the
newest release when it was recorded)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness.agents import claude
from harness.pipeline import receipt, record, verdict
from harness.stream import facts

EXPECTED = {
    "ok": "succeeded",
    "partial": "succeeded",
    "slowtool": "succeeded",
    "perm_denied": "succeeded",
    "hooks": "succeeded",
    "compact": "succeeded",
    "budget": "budget_exceeded",
    "max_turns1": "max_turns",
    "err401_r2": "auth_error",
    "err500_r2": "api_error",
    "err529_r2": "api_error",
    "err429_r2": "api_error",
    "flaky529_2": "succeeded",
    "conn_refused_r2": "api_error",
    "hang_default": "api_error",
    "err400": "failed",
    "sigint_hang": "failed",
    "sigterm_hang": "crashed",
}


EXPECTED_2_1_332 = {
    "ok": "succeeded",
    "partial": "succeeded",
    "max_turns1": "max_turns",
    "err401": "auth_error",
    "err500": "api_error",
    "conn_refused": "api_error",
    "err400": "failed",
    "prompt_too_long": "failed",
}
NEWEST = Path(__file__).resolve().parent / "fixtures" / "reference-2.1.332"


def _session(tmp_path: Path, reference: Path, name: str) -> Path:
    shutil.copy(reference / f"{name}.jsonl", tmp_path / "events.jsonl")
    code = re.search(r"^exit(?:_code)?: (\d+)$", (reference / f"{name}.txt").read_text(), re.M)
    assert code, name
    (tmp_path / "exit_code").write_text(code.group(1) + "\n")
    return tmp_path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_of_each_reference_run(tmp_path: Path, reference: Path, name: str) -> None:
    sdir = _session(tmp_path, reference, name)
    v = verdict.classify(record.read(sdir))
    assert v.verdict == EXPECTED[name], v.reason


@pytest.mark.parametrize("name", sorted(EXPECTED_2_1_332))
def test_verdict_of_each_newest_cli_run(tmp_path: Path, name: str) -> None:
    sdir = _session(tmp_path, NEWEST, name)
    v = verdict.classify(record.read(sdir))
    assert v.verdict == EXPECTED_2_1_332[name], v.reason


@pytest.mark.parametrize(("ref", "name", "reason"), [
    (NEWEST, "prompt_too_long", "the CLI refused the prompt: Prompt is too long"),
    (NEWEST, "err400", "API rejected the request (400): messages.0.content: bad request (fake)"),
    (None, "err400", "API rejected the request (400): messages.0.content: bad request (fake)"),
])
def test_deterministic_refusals_are_not_retryable(tmp_path: Path, reference: Path, ref: Path | None, name: str,
                                                  reason: str) -> None:
    sdir = _session(tmp_path, ref or reference, name)
    v = verdict.classify(record.read(sdir))
    assert (v.verdict, v.retryable, v.reason) == ("failed", False, reason)


def test_a_usage_error_of_the_cli_is_its_own_verdict(tmp_path: Path) -> None:
    """Both CLI versions print commander's error and exit 1 before any init line."""
    words = ("error: option '--permission-mode <mode>' argument 'bogus' is invalid. "
             "Allowed choices are acceptEdits, auto, bypassPermissions, default, dontAsk, plan.")
    (tmp_path / "events.jsonl").write_bytes(b"")
    (tmp_path / "stderr.log").write_text(words + "\n")
    (tmp_path / "exit_code").write_text("1\n")
    v = verdict.classify(record.read(tmp_path))
    assert (v.verdict, v.reason) == ("usage_error", "the CLI refused its arguments: " + words)
    # a binary that is not there stays spawn_failed, retried: it may be back
    (tmp_path / "stderr.log").write_text("env: 'claude': No such file or directory\n")
    (tmp_path / "exit_code").write_text("127\n")
    v = verdict.classify(record.read(tmp_path))
    assert (v.verdict, v.retryable) == ("spawn_failed", None)


@pytest.mark.parametrize(("ref", "name"), [(None, "err500_r2"), (NEWEST, "err500")])
def test_an_api_error_reason_says_api_error_once(tmp_path: Path, reference: Path, ref: Path | None, name: str) -> None:
    sdir = _session(tmp_path, ref or reference, name)
    v = verdict.classify(record.read(sdir))
    assert v.reason.startswith("API error 500: Internal server error."), v.reason
    assert "API Error" not in v.reason


def test_err400_is_not_retryable_and_5xx_is(tmp_path: Path, reference: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _session(tmp_path / "a", reference, "err400")
    b = _session(tmp_path / "b", reference, "err500_r2")
    assert verdict.classify(record.read(a)).retryable is False
    assert verdict.classify(record.read(b)).retryable is None


def _assistant_ids(path: Path) -> set[str]:
    """The distinct assistant message ids of a stream: its turns (docs/file-formats.md)."""
    ids = set()
    for raw in path.read_bytes().splitlines():
        ev = orjson.loads(raw)
        msg = ev.get("message") if ev.get("type") == "assistant" else None
        if isinstance(msg, dict) and msg.get("model") != "<synthetic>":
            ids.add(msg["id"])
    return ids


@pytest.mark.parametrize(("ref", "name"), [(None, n) for n in
                                           ["ok", "partial", "budget", "max_turns1", "slowtool", "compact", "flaky529_2"]]
                         + [(NEWEST, n) for n in ["ok", "partial", "max_turns1"]])
def test_receipt_equals_the_cli_result_line(tmp_path: Path, reference: Path, ref: Path | None, name: str) -> None:
    reference = ref or reference
    sdir = _session(tmp_path, reference, name)
    f = facts.scan(sdir / "events.jsonl")
    m = receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))
    result = [orjson.loads(x) for x in (reference / f"{name}.jsonl").read_bytes().splitlines() if b'"type":"result"' in x][-1]
    mu = result["modelUsage"]
    assert m["cost_usd"] == round(result["total_cost_usd"], 6)
    assert m["cost_estimated"] is False
    assert m["cli_num_turns"] == result["num_turns"]
    assert m["turns"] == len(_assistant_ids(sdir / "events.jsonl"))
    assert m["tokens"] == {
        "input": sum(v["inputTokens"] for v in mu.values()),
        "output": sum(v["outputTokens"] for v in mu.values()),
        "cache_read": sum(v["cacheReadInputTokens"] for v in mu.values()),
        "cache_write": sum(v["cacheCreationInputTokens"] for v in mu.values()),
    }


def test_receipt_counts_tools_and_retries(tmp_path: Path, reference: Path) -> None:
    sdir = _session(tmp_path, reference, "err529_r2")
    f = facts.scan(sdir / "events.jsonl")
    m = receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))
    assert m["api_retries"] == {"529": 2}
    sdir2 = tmp_path / "ok"
    sdir2.mkdir()
    _session(sdir2, reference, "ok")
    f2 = facts.scan(sdir2 / "events.jsonl")
    assert receipt.build(record.read(sdir2, f2, {}), verdict.classify(record.read(sdir2, f2, {})))["tool_calls"] == {"Bash": 1}


def _timeline(sdir: Path, *marks: dict[str, object]) -> None:
    (sdir / "timeline.jsonl").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in marks))


def test_tool_time_when_the_sidecar_has_not_read_the_last_lines(tmp_path: Path, reference: Path) -> None:
    """The loop finalizes as soon as the agent exits; the sidecar may still be behind.

    It saw the 6 s Bash call start at t0, but not its result: the call ended at or
    before the stream's last write, 6.25 s later.
    """
    sdir = _session(tmp_path, reference, "slowtool")
    t0 = 1795290000.0
    _timeline(sdir, {"n": 1, "t": t0 - 1, "kind": "init"},
              {"n": 10, "t": t0, "kind": "tool_use", "ref": "toolu_fake0002", "name": "Bash"})
    os.utime(sdir / "events.jsonl", (t0 + 6.25, t0 + 6.25))
    f = facts.scan(sdir / "events.jsonl")
    assert receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))["tool_time_s"] == {"Bash": 6.25}
    # once the sidecar has caught up, its own time for the result counts
    _timeline(sdir, {"n": 10, "t": t0, "kind": "tool_use", "ref": "toolu_fake0002", "name": "Bash"},
              {"n": 16, "t": t0 + 6.125, "kind": "tool_result", "ref": "toolu_fake0002", "name": "?"})
    assert receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))["tool_time_s"] == {"Bash": 6.125}
    # a call whose start it never saw has no time to give: nothing is made up
    _timeline(sdir, {"n": 1, "t": t0 - 1, "kind": "init"})
    assert receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))["tool_time_s"] == {}


def test_cost_is_estimated_from_the_stream_when_there_is_no_result(tmp_path: Path, reference: Path) -> None:
    lines = [x for x in (reference / "partial.jsonl").read_bytes().splitlines() if b'"type":"result"' not in x]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "exit_code").write_text("143\n")
    f = facts.scan(tmp_path / "events.jsonl")
    m = receipt.build(record.read(tmp_path, f, {}), verdict.classify(record.read(tmp_path, f, {})))
    assert m["verdict"] == "crashed"
    assert m["cost_estimated"] is True
    # two main-loop messages: 50 in, 1000 cache write, 2000 cache read each; 20 and 3 out (opus prices)
    expected = (100 * 5 + 23 * 25 + 4000 * 0.5 + 2000 * 6.25) / 1_000_000
    assert m["cost_usd"] == pytest.approx(expected)


def test_harness_stop_wins_over_the_stream(tmp_path: Path, reference: Path) -> None:
    sdir = _session(tmp_path, reference, "sigint_hang")
    (sdir / "kill.json").write_bytes(orjson.dumps({"reason": "stalled", "detail": "silent for 30 s"}))
    v = verdict.classify(record.read(sdir))
    assert (v.verdict, v.reason) == ("stalled", "silent for 30 s")


def test_usage_limit_from_rate_limit_event(tmp_path: Path) -> None:
    events = [
        {"type": "system", "subtype": "init", "session_id": "x"},
        {
            "type": "rate_limit_event",
            "rate_limit_info": {"status": "rejected", "resetsAt": 1795300000, "rateLimitType": "five_hour"},
        },
        {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 429, "result": "limit"},
    ]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    (tmp_path / "exit_code").write_text("1\n")
    v = verdict.classify(record.read(tmp_path))
    assert (v.verdict, v.resets_at) == ("usage_limited", 1795300000.0)


def test_turns_are_assistant_messages_not_the_cli_count(tmp_path: Path, reference: Path) -> None:
    """--max-turns 1: one message, the CLI says num_turns 2; the reason and receipt say 1."""
    sdir = _session(tmp_path, reference, "max_turns1")
    f = facts.scan(sdir / "events.jsonl")
    v = verdict.classify(record.read(sdir, f, {}))
    m = receipt.build(record.read(sdir, f, {}), v)
    assert (v.reason, m["turns"], m["cli_num_turns"]) == ("reached the turn limit after 1 turn", 1, 2)


def test_a_stopped_session_with_tokens_gets_an_estimated_cost(tmp_path: Path, reference: Path) -> None:
    """SIGINT mid-stream: the CLI's result line says total_cost_usd 0 with empty
    modelUsage, while the stream shows the tokens of the request that was answered."""
    sdir = _session(tmp_path, reference, "sigint_hang")
    f = facts.scan(sdir / "events.jsonl")
    m = receipt.build(record.read(sdir, f, {}), verdict.classify(record.read(sdir, f, {})))
    assert m["token_source"] == "stream" and m["tokens"]["cache_write"] > 0
    assert m["cost_estimated"] is True
    assert m["cost_usd"] == facts.estimate_cost_usd(f.messages, "") > 0
    assert m["turns"] == 1


@pytest.mark.parametrize(("ref", "name"), [(None, "ok"), (None, "budget"), (NEWEST, "ok"), (NEWEST, "max_turns1")])
def test_the_price_table_agrees_with_the_cli(reference: Path, ref: Path | None, name: str) -> None:
    """For the models each CLI version uses by default, the price table gives the
    cost the CLI itself reports (modelUsage.costUSD)."""
    result = [orjson.loads(x) for x in ((ref or reference) / f"{name}.jsonl").read_bytes().splitlines()
              if b'"type":"result"' in x][-1]
    for model, mu in result["modelUsage"].items():
        usage = facts.MessageUsage(model=model, input_tokens=mu["inputTokens"], output_tokens=mu["outputTokens"],
                                   cache_read=mu["cacheReadInputTokens"], cache_write=mu["cacheCreationInputTokens"])
        assert facts.estimate_cost_usd({"m": usage}, "") == pytest.approx(mu["costUSD"]), model


def test_price_lookup_by_prefix_family_and_default() -> None:
    price_for = claude.Claude().price_per_mtok
    assert price_for("claude-opus-5-5") == (4.0, 20.0, 0.2, 5.0)
    assert price_for("claude-opus-4-8[1m]") == (5.0, 25.0, 0.5, 6.25)
    assert price_for("claude-haiku-4-5-20251001") == (1.0, 5.0, 0.1, 1.25)
    assert price_for("claude-sonnet-9") == claude.FAMILY_PRICES_PER_MTOK["sonnet"]
    assert price_for("something-else") == claude.MODEL_PRICES_PER_MTOK[claude.DEFAULT_PRICED_MODEL]


@pytest.mark.parametrize(("verify_exit", "log", "verdict_reason"), [
    ("0\n", "all 12 passed\n", ("succeeded", "verified by `make test`")),
    ("2\n", "ok a\nFAIL b: expected 1, got 2\n\n",
     ("verify_failed", "verify `make test` exited 2: ok a | FAIL b: expected 1, got 2")),
    ("124\n", "slow\n", ("verify_failed", "verify `make test` ran past its 60s limit and was stopped (exit 124): slow")),
    (None, "", ("verify_failed", "verify `make test` did not finish")),
])
def test_a_succeeded_session_is_only_as_good_as_its_verify(tmp_path: Path, reference: Path, verify_exit: str | None,
                                                            log: str, verdict_reason: tuple[str, str]) -> None:
    sdir = _session(tmp_path, reference, "ok")
    meta = {"verify": {"cmd": "make test", "timeout_s": 60}}
    (sdir / "verify.log").write_text(log)
    if verify_exit is not None:
        (sdir / "verify.pid").write_text("1\n")
        (sdir / "verify_exit").write_text(verify_exit)
    v = verdict.classify(record.read(sdir, meta=meta))
    assert v.verdict == verdict_reason[0] and verdict_reason[1] in v.reason, v.reason
    m = receipt.build(record.read(sdir, meta=meta), v)
    assert m["verify"]["cmd"] == "make test"
    assert m["verify"]["exit_code"] == (int(verify_exit) if verify_exit else None)


def test_a_session_stopped_while_it_verified_has_the_stop_s_verdict(tmp_path: Path, reference: Path) -> None:
    sdir = _session(tmp_path, reference, "ok")
    (sdir / "verify_exit").write_text("130\n")
    (sdir / "kill.json").write_text('{"reason": "interrupted", "detail": "canceled by operator"}')
    v = verdict.classify(record.read(sdir, meta={"verify": {"cmd": "make test", "timeout_s": 60}}))
    assert (v.verdict, v.reason) == ("interrupted", "canceled by operator")


def _resumed_round(tmp_path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """A fix round that streamed 10 in / 20 out, with the given result line."""
    sdir = tmp_path / "ses_fix"
    sdir.mkdir(parents=True)
    lines = [
        {"type": "system", "subtype": "init", "model": "claude-opus-5-5", "session_id": "u"},
        {"type": "assistant", "message": {"id": "m2", "model": "claude-opus-5-5", "content": [{"type": "text", "text": "ok"}],
                                          "usage": {"input_tokens": 10, "output_tokens": 20}}},
        {"type": "result", "subtype": "success", "is_error": False, **result},
    ]
    (sdir / "events.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    (sdir / "exit_code").write_text("0\n")
    rec = record.read(sdir, meta={"fix_of": "ses_prev", "fix_round": 1})
    return receipt.build(rec, verdict.classify(rec))


def _usage(i: int, o: int, cost: float) -> dict[str, Any]:
    return {"claude-opus-5-5": {"inputTokens": i, "outputTokens": o, "costUSD": cost}}


def test_a_fix_round_s_receipt_is_its_own_whether_the_cli_reports_totals_from_the_start_or_not(tmp_path: Path) -> None:
    # CLI 2.1.332 (measured): a resumed conversation's result holds the earlier round
    # too; model_usage_since_last_result holds this process's own
    m = _resumed_round(tmp_path / "a", {"total_cost_usd": 0.05524, "modelUsage": _usage(1010, 2020, 0.05524),
                                        "model_usage_since_last_result": _usage(10, 20, 0.00584)})
    assert (m["tokens"]["input"], m["tokens"]["output"], m["cost_usd"], m["cli_cumulative"]) == (10, 20, 0.00584, True)
    assert (m["cli_cost_usd"], m["cli_tokens"]["output"], m["fix_round"]) == (0.05524, 2020, 1)
    # CLI 2.1.197: the process's own, as it is, even when it billed calls the stream does not show
    m = _resumed_round(tmp_path / "b", {"total_cost_usd": 0.09, "modelUsage": _usage(1010, 2020, 0.09)})
    assert (m["tokens"]["input"], m["tokens"]["output"], m["cost_usd"], m["cli_cumulative"]) == (1010, 2020, 0.09, False)
