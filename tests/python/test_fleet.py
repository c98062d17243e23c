"""STORE=postgres as a fleet sees it, on the tests' PostgreSQL server: leases that
run out and are taken over, the fencing of the old holder, renewals, the fleet-wide
cap, the hosts, and a database that does not answer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import jsonio
from harness.pipeline import gate, start
from harness.pipeline.policy import Policy
from harness.store import FencedError, FleetFullError, Store, StoreDownError, StoreError, open_store
from harness.store.postgres import where

NOW = 1_800_000_000.0


def _host(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, lease_s: float = 10) -> Store:
    """A host of the fleet: its own state directory and name, the one database."""
    monkeypatch.setenv("HARNESS_HOST_NAME", name)
    monkeypatch.setenv("HARNESS_LEASE_S", str(lease_s))
    monkeypatch.setenv("HARNESS_STORE", "postgres")  # the directory is named postgres, as a loop's would be
    store = open_store(tmp_path / name)
    store.init()
    return store


def _events(store: Store) -> list[dict[str, object]]:
    path = store.state_dir / "events.jsonl"
    return [jsonio.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_a_lease_that_runs_out_is_taken_over_and_its_holder_fenced(pg_schema: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    a.add([("t", {"id": "x", "prompt": "p"})])
    first = a.claim("ses_a", "w", NOW)
    assert first is not None and first.token == 1
    assert b.claim("ses_b", "w", NOW + 9) is None  # a's lease holds for LEASE_S
    assert set(a.live()) == {"ses_a"} and b.live() == {}
    second = b.claim("ses_b", "w", NOW + 10.5)
    assert second is not None and (second.item_id, second.token) == ("x", 2)
    assert set(b.live()) == {"ses_b"} and a.live() == {}  # the item is b's now, on either host's view
    taken = [e for e in _events(b) if e["event"] == "item.taken_over"]
    assert [(e["item"], e["from_host"], e["from_session"], e["from_token"]) for e in taken] == [("x", "a", "ses_a", 1)]
    with pytest.raises(FencedError, match="ses_a \\(token 1\\) is stale"):
        a.finish(first, "succeeded", {"session_id": "ses_a", "verdict": "succeeded"}, 1, None)
    assert a.beat({"pid": 1}, now=NOW + 11) == 0  # a renews nothing: it holds nothing
    b.finish(second, "succeeded", {"session_id": "ses_b", "verdict": "succeeded"}, 1, None)
    state, item = b.get("x")
    assert state == "succeeded" and [h["session_id"] for h in item["history"]] == ["ses_b"]


def test_a_host_s_beat_renews_its_leases_and_lists_it(pg_schema: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    a.add([("t", {"id": "x", "prompt": "p"})])
    assert a.claim("ses_a", "w", NOW) is not None
    assert a.beat({"pid": 11, "sessions": 1}, now=NOW + 8) == 1
    assert b.claim("ses_b", "w", NOW + 12) is None  # renewed at NOW + 8: good until NOW + 18
    assert b.claim("ses_b", "w", NOW + 18.5) is not None
    b.beat({"pid": 22, "sessions": 1})
    hosts = {h["host"]: h for h in b.hosts()}
    assert set(hosts) == {"a", "b"} and hosts["b"]["this"] and not hosts["a"]["this"]
    assert (hosts["a"]["running"], hosts["b"]["running"], hosts["a"]["heartbeat"]["pid"]) == (0, 1, 11)


def test_fleet_jobs_caps_the_sessions_of_every_host(pg_schema: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_FLEET_JOBS", "1")
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    a.add([("t", {"id": "x", "prompt": "p"}), ("t", {"id": "y", "prompt": "p"})])
    assert a.claim("ses_a", "w", NOW) is not None
    with pytest.raises(FleetFullError, match="FLEET_JOBS=1"):
        b.claim("ses_b", "w", NOW)
    blocked = gate.claim_gated(b, "ses_b", "w", Policy(), time.time())
    assert isinstance(blocked, gate.Blocked) and blocked.kind == "fleet"
    assert b.get("y")[0] == "pending"


def test_a_database_that_does_not_answer_blocks_claims_and_is_named_without_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://harness:s3cret-password@/harness?host={tmp_path / 'no-server-here'}"
    monkeypatch.setenv("HARNESS_DATABASE_URL", url)
    state = tmp_path / "state"
    state.mkdir()
    (state / "store").write_text("postgres\n")
    with pytest.raises(StoreDownError) as exc:
        open_store(state)
    assert "s3cret" not in str(exc.value) and "\n" not in str(exc.value)
    assert where(url) == f"database harness on {tmp_path / 'no-server-here'}"
    got = start.start(state, "ses_1", "w", 1, Policy(), time.time())
    assert isinstance(got, gate.Blocked) and got.kind == "store" and got.until is not None
    assert "s3cret" not in got.reason and "cannot be reached" in got.reason


def test_a_fix_round_waits_for_its_host_while_that_host_beats(pg_schema: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    a.add([("t", {"id": "x", "prompt": "p"}), ("t", {"id": "y", "prompt": "p"})])
    leases = [a.claim(f"ses_{n}", "w", NOW) for n in (1, 2)]
    for lease in leases:
        assert lease is not None
        fix = {"round": 1, "session": lease.session_id, "agent_session_id": "u", "host": "a"}
        a.finish(lease, "pending", {"session_id": lease.session_id, "verdict": "verify_failed"}, 0, None,
                 {"fix": fix, "fix_rounds": 1})
    a.beat({"pid": 1}, now=NOW)
    assert b.claim("ses_b", "w", NOW + 5) is None  # a beats: its conversations are a's to resume
    mine = a.claim("ses_a2", "w", NOW + 5)
    assert mine is not None and mine.item["fix"]["host"] == "a"
    # a stops beating: after LEASE_S, its other round may be taken by b (start.py then begins anew)
    taken = b.claim("ses_b", "w", NOW + 10.5)
    assert taken is not None and taken.item_id != mine.item_id


def test_exclusive_is_one_host_at_a_time(pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    with a.exclusive("integrate") as held:
        assert held
        with b.exclusive("integrate") as other:
            assert not other
        with b.exclusive("something else") as other:
            assert other
    with b.exclusive("integrate") as held:
        assert held


def test_one_pause_and_one_breaker_hold_every_host(pg_schema: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One API account: a usage limit met on one host pauses them all; so does the breaker."""
    a = _host(tmp_path, "a", monkeypatch)
    b = _host(tmp_path, "b", monkeypatch)
    now = time.time()
    a.set_pause(now + 600, "usage limit (resets at 10:00)", "session", "ses_a")
    held = gate.check(b.state_dir, Policy(), now)
    assert isinstance(held, gate.Blocked) and held.kind == "paused" and "usage limit" in held.reason
    assert b.clear_pause("operator") and gate.check(a.state_dir, Policy(), now) is None
    with a.breaker({"state": "closed"}) as c:
        c.update(state="open", open_until=now + 60, reason="529 storm")
    with b.breaker({"state": "closed"}) as c:
        assert (c["state"], c["reason"]) == ("open", "529 storm")


def test_reindex_is_refused_on_a_store_every_host_shares(pg_schema: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    a = _host(tmp_path, "a", monkeypatch)
    a.record_attempt({"session_id": "ses_other_host", "item_id": "x", "verdict": "succeeded"})
    with pytest.raises(StoreError, match="not rebuilt from one host"):
        a.reindex()  # type: ignore[attr-defined]
    assert [r["session_id"] for r in a.attempts()] == ["ses_other_host"]
