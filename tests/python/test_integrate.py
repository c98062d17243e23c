"""The merge queue (pipeline/integrate.py) on a real repository: a landing whose
bookkeeping a crash cut short never lands twice, in any mode; an item the queue
cannot handle does not hold up the ones behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import jsonio
from harness.pipeline import integrate
from harness.pipeline.policy import Policy
from harness.store import Store, open_store

NOW = 1_800_000_000.0


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _verified(tmp_path: Path, store: Store, item_id: str, title: str = "") -> None:
    """An item whose session committed <item_id>.txt on its branch, now verified."""
    repo, sid = tmp_path / "repo", f"ses_{item_id}"
    branch = f"harness/{item_id}/1"
    git(repo, "branch", branch, "main")
    wt = tmp_path / "wt" / item_id
    git(repo, "worktree", "add", "-q", str(wt), branch)
    (wt / f"{item_id}.txt").write_text(item_id + "\n")
    git(wt, "add", ".")
    git(wt, "commit", "-qm", f"add {item_id}.txt")
    git(repo, "worktree", "remove", "--force", str(wt))
    (tmp_path / "state" / "sessions" / sid).mkdir(parents=True)
    jsonio.write_json(tmp_path / "state" / "sessions" / sid / "meta.json",
                      {"session_id": sid, "branch": branch, "claude_session_id": "u", "cwd": str(wt)})
    store.add([("t", {"id": item_id, "prompt": "p", **({"title": title} if title else {})})])
    lease = store.claim(sid, "w", NOW)
    assert lease is not None and lease.item_id == item_id
    store.finish(lease, "verified", {"session_id": sid, "verdict": "succeeded", "reason": "ok"}, 1, None)


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Path, Store]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial commit")
    git(repo, "branch", "trunk")
    store = open_store(tmp_path / "state")
    store.init()
    return tmp_path, store


@pytest.mark.parametrize("mode", integrate.MODES)
def test_a_landing_cut_short_by_a_crash_is_not_landed_again(rig: tuple[Path, Store], mode: str) -> None:
    tmp_path, store = rig
    p = Policy(REPO_DIR=str(tmp_path / "repo"), INTEGRATE=mode, TARGET_BRANCH="trunk")
    _verified(tmp_path, store, "a")
    assert integrate.integrate_one(tmp_path / "state", p, NOW) == "landed"
    landed = git(tmp_path / "repo", "rev-parse", "trunk")
    # the crash: the target moved, but the item never left verified
    item = store.get("a")[1]
    store.settle("a", "succeeded", "verified", {"verdict": "crash", "reason": "undone by the test"})
    assert store.get("a")[0] == "verified" and item["state"] == "succeeded"
    assert integrate.integrate_one(tmp_path / "state", p, NOW) == "landed"
    assert git(tmp_path / "repo", "rev-parse", "trunk") == landed  # nothing landed twice
    assert store.get("a")[1]["last_reason"].startswith("already on trunk")


def test_an_item_the_queue_cannot_handle_does_not_hold_up_the_next(rig: tuple[Path, Store],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tmp_path, store = rig
    p = Policy(REPO_DIR=str(tmp_path / "repo"), INTEGRATE="merge", TARGET_BRANCH="trunk")
    _verified(tmp_path, store, "a", title="a title with a NUL \0 in it")
    _verified(tmp_path, store, "b")
    assert integrate.integrate_one(tmp_path / "state", p, NOW) == "landed"  # the NUL is no obstacle
    real = integrate._merge_and_verify

    def broken(state_dir: Path, pol: Policy, landing: integrate.Landing, tip: str, scratch: Path) -> object:
        if landing.item["id"] == "b":
            raise ValueError("something about this item")
        return real(state_dir, pol, landing, tip, scratch)

    monkeypatch.setattr(integrate, "_merge_and_verify", broken)
    _verified(tmp_path, store, "c")
    assert integrate.integrate_one(tmp_path / "state", p, NOW) == "quarantined"
    assert "could not integrate it: ValueError: something about this item" in store.get("b")[1]["last_reason"]
    assert integrate.integrate_one(tmp_path / "state", p, NOW) == "landed"
    assert [store.get(i)[0] for i in "abc"] == ["succeeded", "quarantined", "succeeded"]
