"""Queue items, claims and the bootstrap renderer."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
from harness import jsonio
from harness.pipeline import render
from harness.store import queue


def test_render_is_single_pass_and_leaves_unknown_placeholders() -> None:
    out = render.render("{{TITLE}} / {{SESSION_ID}} / {{NOPE}}", {"TITLE": "{{SESSION_ID}} $(x)", "SESSION_ID": "ses_1"})
    assert out == "{{SESSION_ID}} $(x) / ses_1 / {{NOPE}}"


def test_prepare_writes_prompt_bytes_exactly(tmp_path: Path) -> None:
    prompt = "a\u0000b `c` $(d) {{PROMPT}} é\n"
    item = tmp_path / "item.json"
    jsonio.write_json(
        item,
        {
            "id": "x",
            "title": "T",
            "prompt": prompt,
            "attempts": 1,
            "history": [{"verdict": "api_error", "reason": "API error 500"}],
        },
    )
    tpl = tmp_path / "t.md"
    tpl.write_text("{{WORK_ITEM_ID}} {{ATTEMPT}} {{PREVIOUS_ERROR}} {{SESSION_ID}}")
    render.prepare(jsonio.read_json(item), tpl, tmp_path, {"SESSION_ID": "ses_9"})
    assert (tmp_path / "input.txt").read_bytes() == prompt.encode()
    assert (tmp_path / "prompt.md").read_text() == "x 2 api_error: API error 500 ses_9"


def test_ids_are_checked() -> None:
    for bad in ["", "../x", "a/b", ".hidden", "-flag", "x" * 65, "sp ace"]:
        with pytest.raises(queue.QueueError):
            queue.check_id(bad)
    assert queue.check_id("A.b_c-9") == "A.b_c-9"


def _claimer(state: str, sid: str, out: multiprocessing.Queue[str]) -> None:
    got = queue.claim(queue.Queue(Path(state)), sid, sid, time.time())
    out.put(got["id"] if got else "")


def test_concurrent_claims_never_hand_out_an_item_twice(tmp_path: Path) -> None:
    q = queue.Queue(tmp_path)
    q.init()
    queue.add(q, [("t", {"id": f"i{n}", "prompt": "p"}) for n in range(6)])
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(tmp_path), f"s{n}", results)) for n in range(10)]
    for p in procs:
        p.start()
    got = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join()
    results.close()
    results.join_thread()
    claimed = [g for g in got if g]
    assert sorted(claimed) == [f"i{n}" for n in range(6)]
    assert len(set(claimed)) == len(claimed)
    assert sorted(q.ids("running")) == sorted(claimed)


def test_finish_keeps_history_and_moves_atomically(tmp_path: Path) -> None:
    q = queue.Queue(tmp_path)
    q.init()
    queue.add(q, [("t", {"id": "a", "prompt": "p"})])
    assert queue.claim(q, "ses_1", "w", time.time()) is not None
    queue.finish(q, "a", "pending", {"session_id": "ses_1", "verdict": "api_error", "reason": "r"}, 1, None)
    assert q.ids("running") == [] and q.ids("pending") == ["a"]
    item = q.load("pending", "a")
    assert item["history"][0]["session_id"] == "ses_1" and "lease" not in item and item["attempts"] == 1
