"""The Store contract (lib/harness/store/base.py), run against every backend.

Another backend passes it by adding its name to store.BACKENDS and, when it needs
a server, a fixture branch in `store` below."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from harness import store as store_mod
from harness.store import FencedError, ItemState, Lease, Store, UnknownItemError

NOW = 1_800_000_000.0


@pytest.fixture
def store(any_store: Store) -> Store:
    """Every backend (conftest.py any_store; postgres on a schema of its own)."""
    return any_store


def test_every_backend_is_tried() -> None:
    assert sorted(store_mod.BACKENDS) == ["files", "postgres", "sqlite"]


def add(s: Store, *items: dict[str, object]) -> list[str]:
    return s.add([("test", {"prompt": "p", **item}) for item in items])


def test_items_are_added_found_and_listed(store: Store) -> None:
    assert add(store, {"id": "a"}, {"id": "b", "priority": "high"}) == ["a", "b"]
    state, item = store.get("b")
    assert (state, item["id"], item["priority"]) == ("pending", "b", "high")
    assert store.states() == {"a": "pending", "b": "pending"}
    assert sorted(r["id"] for r in store.items(["pending"])) == ["a", "b"]


def test_an_unknown_id_is_a_one_line_error(store: Store) -> None:
    with pytest.raises(UnknownItemError, match=r"^unknown item id: nope$"):
        store.get("nope")
    with pytest.raises(store_mod.StoreError):
        store.cancel("nope")


def test_a_claim_takes_the_best_ready_item_with_a_lease(store: Store) -> None:
    add(store, {"id": "low", "priority": "low"}, {"id": "high", "priority": "high"},
        {"id": "after", "priority": "critical", "depends_on": ["low"]})
    lease = store.claim("ses_1", "w1", NOW)
    assert lease is not None and (lease.item_id, lease.session_id, lease.token) == ("high", "ses_1", 1)
    assert store.get("high")[0] == "running"
    assert store.lease_of("high") == Lease("high", "ses_1", 1, "w1", lease.item)
    second = store.claim("ses_2", "w1", NOW)
    assert second is not None and second.item_id == "low"
    assert store.claim("ses_3", "w1", NOW) is None  # "after" waits for "low" to succeed
    assert set(store.live()) == {"ses_1", "ses_2"}
    assert store.live()["ses_1"][0] == "high"


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def test_claims_follow_priority_with_ageing_past_held_and_blocked_heads(store: Store) -> None:
    """With AGING_S an item's rank falls an hour at a time: an old low item goes before a
    fresh high one. A class whose oldest item waits (a dependency, a not_before) gives its
    next ready item; of equal ranks the older item goes first."""
    hour = 3600.0
    add(store,
        {"id": "fresh-high", "priority": "high", "created_at": iso(NOW - 60)},
        {"id": "old-low", "priority": "low", "created_at": iso(NOW - 3 * hour - 60)},  # rank 3 - 3 = 0
        {"id": "crit-blocked", "priority": "critical", "created_at": iso(NOW - 5 * hour),
         "depends_on": ["fresh-high"]},
        {"id": "crit-held", "priority": "critical", "created_at": iso(NOW - 4 * hour)},
        {"id": "crit-ready", "priority": "critical", "created_at": iso(NOW - 10)},
        {"id": "normal-mid", "priority": "normal", "created_at": iso(NOW - 1 * hour - 60)})  # 2 - 1 = 1
    held = store.claim("ses_h", "w", NOW - 5 * hour, aging_s=hour)  # the oldest ready item then
    assert held is not None and held.item_id == "crit-held"
    store.finish(held, "pending", {"session": "ses_h", "verdict": "api_error", "reason": "x"}, 1, iso(NOW + hour))
    order = []
    while (lease := store.claim(f"ses_{len(order)}", "w", NOW, aging_s=hour)) is not None:
        order.append(lease.item_id)
    # rank 0: old-low (3 h old) before crit-ready (10 s old); rank 1: normal-mid (1 h) before fresh-high
    assert order == ["old-low", "crit-ready", "normal-mid", "fresh-high"]
    assert store.get("crit-blocked")[0] == store.get("crit-held")[0] == "pending"


def test_a_claim_skips_the_runs_it_is_told_to_and_run_budgets_are_kept(store: Store) -> None:
    add(store, {"id": "held", "priority": "high", "run": "capped"}, {"id": "free", "priority": "low", "run": "other"},
        {"id": "loose", "priority": "low"})
    first = store.claim("ses_1", "w", NOW, skip_runs=frozenset({"capped"}))
    assert first is not None and first.item_id in ("free", "loose")
    second = store.claim("ses_2", "w", NOW, skip_runs=frozenset({"capped"}))
    assert second is not None and {first.item_id, second.item_id} == {"free", "loose"}
    assert store.claim("ses_3", "w", NOW, skip_runs=frozenset({"capped"})) is None
    third = store.claim("ses_4", "w", NOW)
    assert third is not None and third.item_id == "held"
    assert store.run_budgets() == {}
    store.set_run_budget("capped", 2.5)
    store.set_run_budget("capped", 3.0)  # set again: changed
    store.set_run_budget("other", 1.0)
    assert store.run_budgets() == {"capped": 3.0, "other": 1.0}


def test_a_requeued_item_waits_out_its_not_before(store: Store) -> None:
    add(store, {"id": "a"})
    lease = store.claim("ses_1", "w", NOW)
    assert lease is not None
    store.finish(lease, "pending", {"session": "ses_1", "verdict": "api_error", "reason": "x"}, 1,
                 "2027-01-15T09:00:00.000Z")  # NOW + 3600 s
    assert store.claim("ses_2", "w", NOW) is None
    later = store.claim("ses_2", "w", NOW + 3601)
    assert later is not None and (later.item_id, later.token) == ("a", 2)


def test_exactly_one_of_many_claimers_wins(store: Store) -> None:
    add(store, {"id": "only"})
    won: list[Lease] = []
    start = threading.Barrier(8)

    def claimer(n: int) -> None:
        mine = store_mod.open_store(store.state_dir, _backend(store))
        start.wait()
        got = mine.claim(f"ses_{n}", f"w{n}", NOW)
        if got is not None:
            won.append(got)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0].item_id == "only"


def _backend(s: Store) -> str:
    return next(name for name, kind in store_mod.BACKENDS.items() if type(s) is kind())


def test_finish_moves_the_item_and_keeps_its_history(store: Store) -> None:
    add(store, {"id": "a"})
    lease = store.claim("ses_1", "w", NOW)
    assert lease is not None
    item = store.finish(lease, "succeeded", {"session": "ses_1", "verdict": "succeeded", "reason": "done"}, 1, None)
    assert (item["state"], item["attempts"], item["last_verdict"]) == ("succeeded", 1, "succeeded")
    state, stored = store.get("a")
    assert state == "succeeded" and ItemState(state).terminal and "lease" not in stored
    assert [h["session"] for h in stored["history"]] == ["ses_1"]
    assert store.live() == {}


def test_finish_keeps_the_harness_s_fields_and_a_fix_round_goes_first(store: Store) -> None:
    add(store, {"id": "a", "priority": "low"})
    lease = store.claim("ses_1", "w", NOW)
    assert lease is not None and lease.item_id == "a"
    fix = {"round": 1, "session": "ses_1"}
    store.finish(lease, "pending", {"session": "ses_1", "verdict": "verify_failed"}, 0, None, {"fix": fix, "fix_rounds": 1})
    assert store.get("a")[1]["fix"] == fix
    add(store, {"id": "b", "priority": "critical"})
    lease = store.claim("ses_2", "w", NOW)
    assert lease is not None and lease.item_id == "a"  # its fix round, before new work of any priority
    item = store.finish(lease, "succeeded", {"session": "ses_2", "verdict": "succeeded"}, 1, None, {"fix": None})
    assert "fix" not in item and item["fix_rounds"] == 1
    assert "fix" not in store.get("a")[1]


def test_a_stale_lease_is_fenced_and_changes_nothing(store: Store) -> None:
    add(store, {"id": "a"})
    first = store.claim("ses_1", "w", NOW)
    assert first is not None
    store.finish(first, "pending", {"session": "ses_1", "verdict": "crashed", "reason": "x"}, 1, None)
    second = store.claim("ses_2", "w", NOW)
    assert second is not None and second.token == 2
    with pytest.raises(FencedError, match="ses_1 \\(token 1\\) is stale; the item is held by ses_2 \\(token 2\\)"):
        store.finish(first, "succeeded", {"session": "ses_1", "verdict": "succeeded", "reason": "late"}, 2, None)
    state, item = store.get("a")
    assert (state, item["attempts"], len(item["history"])) == ("running", 1, 1)
    with pytest.raises(FencedError):  # a forged token of the right session is refused as well
        store.finish(Lease("a", "ses_2", 7), "succeeded", {"verdict": "succeeded"}, 2, None)
    store.finish(second, "succeeded", {"session": "ses_2", "verdict": "succeeded", "reason": "ok"}, 2, None)
    with pytest.raises(FencedError, match="the item is not running"):
        store.finish(second, "succeeded", {"session": "ses_2", "verdict": "succeeded", "reason": "twice"}, 2, None)


def test_cancel_and_retry(store: Store) -> None:
    add(store, {"id": "a"}, {"id": "b"})
    assert store.cancel("a") == "canceled a"
    assert store.get("a")[0] == "canceled"
    lease = store.claim("ses_1", "w", NOW)
    assert lease is not None
    store.finish(lease, "quarantined", {"session": "ses_1", "verdict": "max_turns", "reason": "x"}, 1, None)
    store.retry("b")
    state, item = store.get("b")
    assert (state, item["attempts"]) == ("pending", 0)


def test_audit_events_come_back_in_order(store: Store) -> None:
    store.audit("test.one", item="a")
    store.audit("test.two", item="b", n=2)
    got = [(e["event"], e.get("item")) for e in store.events() if e["event"].startswith("test.")]
    assert got == [("test.one", "a"), ("test.two", "b")]


def test_pause_is_set_read_and_cleared(store: Store) -> None:
    assert store.pause() is None
    store.set_pause(NOW + 60, "usage limit", "session", "ses_1")
    p = store.pause()
    assert p is not None and (p["until_epoch"], p["reason"], p["by"]) == (NOW + 60, "usage limit", "session")
    assert store.clear_pause("operator") is True
    assert store.pause() is None and store.clear_pause("operator") is False


def test_the_breaker_record_is_changed_under_its_lock_and_kept(store: Store) -> None:
    fresh = {"state": "closed", "consecutive_failures": 0}
    with store.breaker(fresh) as c:
        assert c == fresh
        c["consecutive_failures"] = 2
    with store.breaker(fresh) as c:
        assert c["consecutive_failures"] == 2 and c["updated_at"]
        c.update(state="open")
    with store.breaker(fresh) as c:
        assert c["state"] == "open"


def test_hosts_name_this_host(store: Store) -> None:
    import socket

    assert [h["host"] for h in store.hosts()] == [socket.gethostname()]


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(store_mod.StoreError, match="unknown store backend 'nope'"):
        store_mod.open_store(tmp_path, "nope")


def test_live_changes_names_directories_a_claim_changes(store: Store) -> None:
    """The sidecar watches these (inotify) to see a new lease at once, not at its next poll."""
    store.add([("t", {"id": "a", "prompt": "p"})])
    paths = store.live_changes()
    assert paths and all(p.is_dir() for p in paths)
    before = {p: sorted(os.listdir(p)) for p in paths}
    assert store.claim("ses_1", "w", 1_800_000_000.0) is not None
    assert any(sorted(os.listdir(p)) != before[p] for p in paths)
