"""finalize presents the session's own fencing token: a session whose lease is no
longer the item's changes nothing (not the item, not the breaker, not the pause)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from harness import jsonio
from harness.pipeline import finalize as finish
from harness.pipeline import policy
from harness.store import Lease, Store, open_store

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"
NOW = 1_800_000_000.0


def _session(state: Path, sid: str, item_id: str, token: int) -> Path:
    sdir = state / "sessions" / sid
    sdir.mkdir(parents=True)
    shutil.copy(REFERENCE / "ok.jsonl", sdir / "events.jsonl")
    (sdir / "exit_code").write_text("0\n")
    jsonio.write_json(sdir / "meta.json", {"session_id": sid, "item_id": item_id, "attempt": 1, "lease_token": token,
                                           "started_epoch": NOW - 5})
    return sdir


def _events(state: Path) -> list[str]:
    return [e["event"] for e in open_store(state).events()]


def _claimed(state: Path, sid: str) -> tuple[Store, Lease]:
    """A store with one item, "a", claimed by sid."""
    store = open_store(state)
    store.init()
    store.add([("t", {"id": "a", "prompt": "p"})])
    lease = store.claim(sid, "w", NOW)
    assert lease is not None
    return store, lease


def test_a_session_whose_item_another_session_holds_is_orphaned(tmp_path: Path) -> None:
    store, first = _claimed(tmp_path, "ses_a")
    store.finish(first, "pending", {"session_id": "ses_a", "verdict": "interrupted", "reason": "x"}, 0, None)
    second = store.claim("ses_b", "w", NOW)
    assert second is not None and second.token == 2  # a free requeue still moves the token on
    out = finish.finalize(_session(tmp_path, "ses_a", "a", first.token), tmp_path, policy.Policy(), NOW,
                          random.Random(1))
    assert (out["orphaned"], out["to"]) == (True, None)
    state, item = store.get("a")
    assert (state, item["lease"]["session_id"], item["attempts"]) == ("running", "ses_b", 0)
    assert "session.orphaned" in _events(tmp_path) and not (tmp_path / "circuit.json").exists()


def test_a_stale_token_is_fenced_and_counts_nowhere(tmp_path: Path) -> None:
    store, lease = _claimed(tmp_path, "ses_a")
    sdir = _session(tmp_path, "ses_a", "a", lease.token + 1)  # not the token of the lease it holds
    out = finish.finalize(sdir, tmp_path, policy.Policy(), NOW, random.Random(1))
    assert (out["fenced"], out["to"]) == (True, None)
    assert store.get("a")[0] == "running"
    assert "session.fenced" in _events(tmp_path) and not (tmp_path / "circuit.json").exists()
    # with its own token, the same session finishes the item
    jsonio.write_json(sdir / "meta.json", {**jsonio.read_json(sdir / "meta.json"), "lease_token": lease.token})
    out = finish.finalize(sdir, tmp_path, policy.Policy(), NOW, random.Random(1))
    assert out["to"] == "succeeded" and store.get("a")[0] == "succeeded"


def test_reconcile_leaves_an_unreadable_running_item_and_says_so(tmp_path: Path) -> None:
    from harness.pipeline import reconcile

    store = open_store(tmp_path, "files")  # a torn item file: the files backend's
    store.init()
    (tmp_path / "queue" / "running" / "bad.json").write_bytes(b"{torn")
    assert reconcile.reconcile(store, 4242, policy.Policy()) == []
    assert (tmp_path / "queue" / "running" / "bad.json").exists()
    assert "item.unreadable" in _events(tmp_path)


def test_reconcile_requeues_a_session_that_never_started_and_adopts_one_that_did(tmp_path: Path) -> None:
    from harness.pipeline import reconcile

    store = open_store(tmp_path)
    store.init()
    store.add([("t", {"id": "a", "prompt": "p"}), ("t", {"id": "b", "prompt": "p", "timeout_s": 90})])
    never = store.claim("ses_never", "w", NOW)
    started = store.claim("ses_started", "w", NOW)
    assert never is not None and started is not None
    (tmp_path / "sessions" / "ses_never").mkdir(parents=True)
    sdir = _session(tmp_path, "ses_started", started.item_id, started.token)
    (sdir / "wrapper.pid").write_text("12345 678\n")
    adopt = reconcile.reconcile(store, 4242, policy.Policy())
    assert [(a.session_id, a.wrapper_pid, a.wrapper_start) for a in adopt] == [("ses_started", "12345", "678")]
    assert store.get(never.item_id)[0] == "pending"
    # the late wrapper of the session that never started finds its place taken
    assert (tmp_path / "sessions" / "ses_never" / "wrapper.pid").read_text().startswith("abandoned by loop 4242")


def test_a_finalize_repeated_after_a_crash_keeps_when_the_session_ended(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With no exit_code (the wrapper died too), the end is "now" at the first finalize;
    a crash before the receipt is written must not move it to the second finalize's now."""
    from harness.pipeline import receipt

    store, lease = _claimed(tmp_path, "ses_a")
    sdir = _session(tmp_path, "ses_a", "a", lease.token)
    (sdir / "exit_code").unlink()

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(receipt, "write", crash)
    with pytest.raises(OSError):
        finish.finalize(sdir, tmp_path, policy.Policy(), NOW, random.Random(1))
    monkeypatch.undo()
    finish.finalize(sdir, tmp_path, policy.Policy(), NOW + 3600, random.Random(1))
    assert jsonio.read_json(sdir / "meta.json")["ended_epoch"] == NOW
    assert jsonio.read_json(sdir / "metrics.json")["wall_s"] == 5.0
    assert store.get("a")[0] == "succeeded"
