"""The dashboard's server side without a browser (Starlette's TestClient, in
process): the login cookie, the actions' guards, the JSON the pages read, and
bad input answered in one line."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import jsonio
from harness.serve import feed, http
from harness.serve.dashboard import failures, recent_events, series
from harness.store import open_store
from starlette.testclient import TestClient

TOKEN = "api-test-token-0123456789"
ACT = {"X-Harness-Action": "1"}


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    store = open_store(state)
    for item_id in ("a", "b"):
        store.add([(item_id, {"id": item_id, "prompt": f"do {item_id}", "title": f"item {item_id}"})])
    return state


def _audit(state: Path) -> list[dict[str, Any]]:
    return [jsonio.loads(line) for line in (state / "events.jsonl").read_bytes().splitlines() if line.strip()]


@contextlib.contextmanager
def serving(state: Path, token: str | None) -> Iterator[TestClient]:
    """The app in process; its worker threads (files, sync endpoints) are told to
    stop as the client closes, and are waited for here."""
    with TestClient(http.app(state, token, port=4242), base_url="http://127.0.0.1") as c:
        yield c
    for t in threading.enumerate():
        if t.name == "AnyIO worker thread":
            t.join(timeout=10)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Path]]:
    state = _state(tmp_path)
    with serving(state, TOKEN) as c:
        yield c, state


def _login(c: TestClient) -> None:
    r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_login_sets_a_cookie_that_proves_the_token_without_holding_it(client: tuple[TestClient, Path]) -> None:
    c, state = client
    assert c.get("/api/state").status_code == 401
    page = c.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login")
    wrong = c.post("/login", data={"token": "not-the-token-at-all"}, follow_redirects=False)
    assert wrong.headers["location"] == "/login?wrong=1"
    assert "harness_session_4242" not in c.cookies
    _login(c)
    cookie = c.cookies["harness_session_4242"]
    assert TOKEN not in cookie
    assert c.get("/api/state").status_code == 200
    refusals = [e for e in _audit(state) if e["event"] == "serve.refused"]
    assert [e["reason"] for e in refusals] == ["no token", "no token", "wrong token"]
    assert TOKEN not in (state / "events.jsonl").read_text()
    _login(c)
    assert c.cookies["harness_session_4242"] != cookie  # each login its own cookie
    c.post("/logout")
    assert c.get("/api/state").status_code == 401
    c.cookies.set("harness_session_4242", cookie)
    assert c.get("/api/state").status_code == 200  # another login of the same browser's, still good
    forged = cookie.rsplit(".", 1)[0] + "." + "0" * 64
    c.cookies.set("harness_session_4242", forged)
    assert c.get("/api/state").status_code == 401


def test_the_pages_forbid_inline_scripts_and_carry_no_token(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    _login(c)
    for path in ("/", "/session/x", "/login", "/static/dashboard.js", "/api/state", "/nope"):
        r = c.get(path)
        assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
        assert TOKEN not in r.text
    assert c.get("/static/dashboard.js").status_code == 200  # open, as /login: they hold no data
    c.cookies.clear()
    assert c.get("/static/dashboard.js").status_code == 200
    assert c.get("/static/index.html").status_code == 404  # the pages are not static files: behind the token


def test_an_action_needs_the_token_and_its_header(client: tuple[TestClient, Path]) -> None:
    c, state = client
    assert c.post("/api/items/a/cancel", headers=ACT).status_code == 401
    _login(c)
    no_header = c.post("/api/items/a/cancel")
    assert no_header.status_code == 403 and "X-Harness-Action" in no_header.json()["error"]
    assert open_store(state).states()["a"] == "pending"
    done = c.post("/api/items/a/cancel", headers=ACT)
    assert done.json() == {"ok": True, "message": "canceled a", "action": "cancel a"}
    assert c.post("/api/items/a/retry", headers=ACT).json()["message"] == "a: canceled -> pending"
    c.cookies.clear()
    bearer = c.post("/api/items/b/cancel", headers=ACT | {"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200
    actions = [(e["action"], e["item"]) for e in _audit(state) if e["event"] == "serve.action"]
    assert actions == [("cancel", "a"), ("retry", "a"), ("cancel", "b")]


def test_pause_and_resume_from_the_dashboard(client: tuple[TestClient, Path]) -> None:
    c, _ = client
    _login(c)
    r = c.post("/api/pause", headers=ACT, json={"seconds": 600, "reason": "lunch"})
    assert r.status_code == 200 and r.json()["message"] == "paused for 600s: lunch"
    pause = c.get("/api/state").json()["pause"]
    assert pause["reason"] == "lunch" and pause["until_epoch"] > time.time() + 590
    assert c.post("/api/resume", headers=ACT).json()["message"] == "resumed: spawning allowed"
    assert c.get("/api/state").json()["pause"] is None


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/api/items/nope/retry", b"", 409, "unknown item id: nope"),
    ("/api/items/a/retry", b"", 409, "item a is pending; only quarantined or canceled items can be retried"),
    ("/api/pause", b'{"seconds": "soon"}', 409, "pause: seconds must be a number from 1 to 2592000"),
    ("/api/pause", b'{"seconds": 0.5}', 409, "pause: seconds must be a number from 1 to 2592000"),
    ("/api/pause", b'{"seconds": true}', 409, "pause: seconds must be a number from 1 to 2592000"),
    ("/api/pause", b"{not json", 400, "the body must be a JSON object"),
    ("/api/pause", b"[1]", 400, "the body must be a JSON object"),
    ("/api/pause", b'{"reason": "' + b"x" * 10_000_000 + b'"}', 413, "the body must be at most 4096 bytes"),
    ("/api/pause", b'{"reason": "\x00 $(rm -rf /) `id` {{x}}"}', 400, "the body must be a JSON object"),
    ("/api/explode", b"", 404, "no such action: /api/explode"),
    ("/api/items/a/explode", b"", 404, "no such action: /api/items/a/explode"),
])
def test_bad_actions_get_one_line_and_change_nothing(client: tuple[TestClient, Path], path: str, body: bytes,
                                                      status: int, error: str) -> None:
    c, state = client
    _login(c)
    before = open_store(state).states()
    r = c.post(path, headers=ACT | {"Content-Type": "application/json"}, content=body)
    assert r.status_code == status
    assert r.json()["error"] == error
    assert open_store(state).states() == before
    assert open_store(state).pause() is None


def test_a_server_without_a_token_shows_everything_and_takes_no_action(tmp_path: Path) -> None:
    state = _state(tmp_path)
    with serving(state, None) as c:
        snap = c.get("/api/state").json()
        assert snap["actions"] is False and snap["queue"]["pending"] == 2
        r = c.post("/api/items/a/cancel", headers=ACT)
        assert r.status_code == 403 and "SERVE_TOKEN" in r.json()["error"]
        assert c.post("/login", data={"token": "anything-at-all-here"}).status_code == 403
        assert c.get("/api/state", headers={"Host": "evil.example"}).status_code == 400  # no rebinding
    assert open_store(state).states()["a"] == "pending"
    assert any(e["event"] == "serve.refused" and e["reason"] == "actions need SERVE_TOKEN" for e in _audit(state))


def test_session_lookups_refuse_unknown_and_unsafe_ids(client: tuple[TestClient, Path]) -> None:
    c, state = client
    _login(c)
    (state / "sessions").mkdir(exist_ok=True)
    for sid in ("nope", "..", ".hidden", "a%2F..%2F..", "x" * 200):
        # ("..": the client folds the path to /api/transcript or /api/sessions, which no GET serves)
        assert c.get(f"/api/sessions/{sid}").status_code in (404, 405), sid
        assert c.get(f"/api/sessions/{sid}/transcript").status_code in (404, 405), sid


def test_the_transcript_is_what_watch_shows_then_the_receipt(client: tuple[TestClient, Path], reference: Path) -> None:
    c, state = client
    _login(c)
    sdir = state / "sessions" / "ses_1"
    sdir.mkdir(parents=True)
    (sdir / "meta.json").write_text('{"item_id": "a", "attempt": 1}')
    lines = (reference / "ok.jsonl").read_bytes()
    hostile = b'{"type":"assistant","message":{"content":[{"type":"text","text":"<b>x</b>\\u0000"}]}}\n'
    (sdir / "events.jsonl").write_bytes(lines + hostile)
    (sdir / "exit_code").write_text("0\n")
    jsonio.write_json(sdir / "metrics.json", {"session_id": "ses_1", "verdict": "succeeded"})
    with c.stream("GET", "/api/sessions/ses_1/transcript") as r:
        body = b"".join(r.iter_bytes())
    events = [block for block in body.split(b"\n\n") if block.startswith(b"event: ")]
    kinds = [block.split(b"\n")[0][7:] for block in events]
    assert kinds[-2:] == [b"receipt", b"end"] and set(kinds[:-2]) == {b"text"}
    text = "".join(jsonio.loads(block.split(b"data: ", 1)[1]) for block in events[:-2])
    assert "turn 1" in text and "<b>x</b>" in text and "\x00" not in text
    assert jsonio.loads(events[-2].split(b"data: ", 1)[1])["verdict"] == "succeeded"


def test_series_and_failures_and_recent_events_from_plain_data(tmp_path: Path) -> None:
    now = 1_800_001_800.0  # half past an hour
    attempts = [{"ended": now - 10, "verdict": "succeeded", "cost_usd": 0.5, "session_id": "s1", "item_id": "a"},
                {"ended": now - 3700, "verdict": "max_turns", "cost_usd": 0.25, "session_id": "s2", "item_id": "b"},
                {"ended": now - 90_000, "verdict": "crashed", "cost_usd": 9.0, "session_id": "s3", "item_id": "c"}]
    s = series(attempts, now, hours=3)
    assert s["sessions"] == [0.0, 1.0, 1.0] and s["succeeded"] == [0.0, 0.0, 1.0] and s["cost_usd"] == [0.0, 0.25, 0.5]
    f = failures([{"id": "b", "last_verdict": "max_turns", "last_reason": "turns", "updated_at": "2026"}], attempts)
    assert [x["session"] for x in f["sessions"]] == ["s2", "s3"] and f["items"][0]["reason"] == "turns"
    log = tmp_path / "events.jsonl"
    whole = b'{"event":"one"}\nnot json\n{"event":"two"}\n'
    log.write_bytes(whole + b'{"event":"torn')
    events, feed_id = recent_events(log)
    assert [e["event"] for e in events] == ["one", "two"]
    assert feed_id == f"{log.stat().st_ino}:{len(whole)}"  # the feed resumes at the torn line
    assert recent_events(tmp_path / "missing.jsonl") == ([], None)


def test_a_quiet_stream_gets_keep_alive_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that a proxy's read timeout never cuts /events or a transcript while nothing happens."""
    monkeypatch.setattr(feed, "KEEPALIVE_S", 0.2)
    state = _state(tmp_path)
    sdir = state / "sessions" / "ses_quiet"
    sdir.mkdir(parents=True)
    (sdir / "events.jsonl").write_bytes(b"")
    with serving(state, None) as c:
        for path in ("/events", "/api/sessions/ses_quiet/transcript"):
            with c.stream("GET", path) as r:
                lines = r.iter_lines()
                assert next(line for line in lines if line.startswith(":")) == ": keep-alive", path
