"""The dashboard in a real browser: Debian's chromium, driven by Playwright.

One loop (the mock agent, two workers) serves the dashboard with a token for the
whole module; each test adds its own items. Screenshots go to the test's temp dir
(kept by pytest under its basetemp: /tmp/pytest-of-<user>/).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import _children
from harness import jsonio
from harness.store import open_store
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, expect, sync_playwright
from test_metrics import _free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "dashboard-test-token-0123456789"
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> $(touch /tmp/x) `id` {{x}}'


def wait_until(what: str, check: Callable[[], Any], deadline_s: float = 20.0) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@dataclass
class Harness:
    tmp: Path
    state: Path
    base: str
    env: dict[str, str]
    loop: subprocess.Popen[bytes]
    gate: Path
    browser: Browser
    errors: list[str] = field(default_factory=list)

    def add(self, item_id: str, prompt: str) -> None:
        subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(self.state), "add", "--id", item_id,
                        "--prompt", prompt], env=self.env, check=True, capture_output=True)

    def events(self) -> list[dict[str, Any]]:
        try:
            data = (self.state / "events.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        return [jsonio.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]  # whole lines only

    def event(self, name: str, item: str) -> dict[str, Any] | None:
        return next((e for e in self.events() if e.get("event") == name and e.get("item") == item), None)

    def item(self, item_id: str) -> dict[str, Any]:
        """The item as the store holds it, with its state (read here, as queue.sh show does)."""
        state, item = open_store(self.state).get(item_id)
        return item | {"state": state}

    def context(self, logged_in: bool, **kwargs: Any) -> BrowserContext:
        ctx = self.browser.new_context(**kwargs)
        if logged_in:
            page = ctx.new_page()
            page.goto(self.base + "/login")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(self.base + "/")
            page.close()
        return ctx

    def page(self, ctx: BrowserContext, path: str = "/") -> Page:
        page = ctx.new_page()
        page.on("console", lambda m: self._console(m))
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.goto(self.base + path)
        return page

    def _console(self, m: ConsoleMessage) -> None:
        if m.type == "error":
            self.errors.append(f"console: {m.text}")


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANTHROPIC_", "CLAUDE", "HARNESS_", "MOCK_CLAUDE_"))}
    env.update(HOME=str(tmp / "home"), PATH=f"{ROOT}/tests/mocks:{env['PATH']}", CLAUDE_BIN=str(ROOT / "tests/mocks/claude"),
               HARNESS_QUIET="1", HARNESS_RETRY_BASE_S="0", HARNESS_IDLE_POLL_S="0.1", HARNESS_POLL_INTERVAL_S="0.05",
               HARNESS_KILL_GRACE_S="1", HARNESS_SERVE_TOKEN=TOKEN, MOCK_CLAUDE_GATE=str(tmp / "gate"),
               MOCK_CLAUDE_GATE_S="60", MOCK_CLAUDE_ONCE=str(tmp / "once"))
    (tmp / "home").mkdir()
    return env


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no chromium at {CHROMIUM}: `make test-deps` installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("dashboard")
    env, port = _env(tmp), _free_port()
    state = tmp / "state"
    with open(tmp / "loop.out", "wb") as out:
        loop = subprocess.Popen([str(ROOT / "loop.sh"), "--state", str(state), "-j", "2", "--set", "JOBS_MAX=2",
                                 "--set", f"SERVE_ADDR=127.0.0.1:{port}"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    pw: Playwright | None = None
    threads_before = set(threading.enumerate())
    try:
        wait_until("the loop's server", lambda: _status(base + "/healthz") == 401)  # it wants the token: it is up
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        first = browser.new_page()
        first.goto(base + "/")
        first.screenshot(path=tmp / "login.png")
        first.close()
        yield Harness(tmp, state, base, env, loop, tmp / "gate", browser)
        browser.close()
    finally:
        if pw is not None:
            pw.stop()
        _threads_end(threads_before)
        loop.send_signal(signal.SIGTERM)
        try:
            loop.wait(timeout=30)
        except subprocess.TimeoutExpired:
            loop.kill()
            loop.wait()
            raise AssertionError("the loop did not stop within 30 s of SIGTERM") from None


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Here, as in conftest.py, a test may leave no child process behind; threads are
    checked at the module's end instead (_threads_end): Playwright's event loop grows
    its thread pool as it needs, and keeps it until Playwright stops."""
    kids_before = _children()
    yield
    assert not _children() - kids_before, f"leaked child processes: {_children() - kids_before}"


def _threads_end(before: set[threading.Thread]) -> None:
    """Every thread started while the module ran ends once Playwright has stopped."""
    for t in set(threading.enumerate()) - before:
        t.join(timeout=10)
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not left, f"threads left running after Playwright stopped: {left}"


@pytest.fixture
def h(harness: Harness) -> Harness:
    """The module's harness, with this test's console errors alone."""
    harness.errors.clear()
    return harness


def _status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers or {}), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_a_live_session_appears_streams_its_transcript_and_shows_model_text_as_text(h: Harness) -> None:
    ctx = h.context(logged_in=True)
    try:
        page = h.page(ctx)
        expect(page.locator("#feed")).to_have_text("feed: live", timeout=10_000)
        # the governor (JOBS_MAX=2, starting at -j 2): its target and why
        expect(page.locator("#governor")).to_contain_text("target 2 (1..2)", timeout=10_000)
        expect(page.locator("#governor")).to_contain_text("starting at 2 (JOBS=2")
        h.add("live", f"[[mock:say]] say: {HOSTILE}")

        wait_until("session.started for the item", lambda: h.event("session.started", "live"))
        row = page.locator('#agents tr[data-item="live"]')
        expect(row).to_be_visible(timeout=1_000)  # the bound: within 1 s of the loop starting it
        page.screenshot(path=h.tmp / "dashboard-live.png", full_page=True)

        row.locator("a").click()
        page.wait_for_url("**/session/*")
        transcript = page.locator("#transcript")
        expect(transcript).to_contain_text("Thinking.", timeout=10_000)
        assert "__pwned" not in transcript.inner_text()  # the model is still at its first delta: the gate holds it
        h.gate.touch()
        expect(transcript).to_contain_text(HOSTILE, timeout=10_000)  # shown as the characters it is made of
        expect(page.locator("#receipt-box")).to_be_visible(timeout=15_000)
        expect(page.locator('#receipt dd[data-key="verdict"]')).to_have_text("succeeded")
        assert page.locator("#transcript *").count() == 0  # text only: no element came out of the model's answer
        assert page.evaluate("window.__pwned") is None
        page.screenshot(path=h.tmp / "session.png", full_page=True)
        assert h.errors == []
    finally:
        ctx.close()


def test_a_failed_item_shows_its_reason_and_retry_needs_the_token(h: Harness) -> None:
    ctx = h.context(logged_in=True)
    stranger = h.context(logged_in=False)
    try:
        page = h.page(ctx)
        h.add("bad", "[[mock:max_turns]] this one runs out of turns")  # MOCK_CLAUDE_ONCE: its retry succeeds
        wait_until("the item quarantined", lambda: h.item("bad")["state"] == "quarantined")
        reason = h.item("bad")["last_reason"]
        assert reason
        row = page.locator('#failed-items tr[data-item="bad"]')
        expect(row.locator("td.reason")).to_have_text(reason, timeout=5_000)
        page.screenshot(path=h.tmp / "dashboard-failed.png", full_page=True)

        refused = stranger.request.post(h.base + "/api/items/bad/retry", headers={"X-Harness-Action": "1"})
        assert refused.status == 401
        assert h.item("bad")["state"] == "quarantined"
        assert any(e.get("event") == "serve.refused" and e.get("path") == "/api/items/bad/retry" for e in h.events())
        login = stranger.new_page()
        login.goto(h.base + "/")
        assert login.url == h.base + "/login"  # a browser without the token gets the login form, nothing else

        row.locator('button[data-act="retry"]').click()
        expect(page.locator("#notice")).to_contain_text("bad: quarantined -> pending")
        wait_until("the retried item succeeded", lambda: h.item("bad")["state"] == "succeeded")
        expect(row).to_have_count(0, timeout=5_000)
        assert any(e.get("event") == "serve.action" and e.get("item") == "bad" for e in h.events())
        assert h.errors == []
    finally:
        stranger.close()
        ctx.close()


def test_the_page_fits_a_phone(h: Harness) -> None:
    """With the longest item id on the page (no place to break it), nothing is wider than a phone."""
    long_id = "phone-" + "x" * 58  # the longest id there is (64 characters), unbroken
    h.add(long_id, "[[mock:max_turns]] " + "y" * 300)
    wait_until("the item quarantined", lambda: h.item(long_id)["state"] == "quarantined")
    ctx = h.context(logged_in=True, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = h.page(ctx)
        expect(page.locator(f'#failed-items tr[data-item="{long_id}"]')).to_be_visible(timeout=10_000)
        expect(page.locator(f'#activity li[data-item="{long_id}"]').first).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        page.screenshot(path=h.tmp / "phone.png", full_page=True)
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's screen"
        assert h.errors == []
    finally:
        ctx.close()
