"""The governor (JOBS_MAX=8) against fixed -j 8 and fixed -j 3, on a scripted API that
refuses (429) a request arriving while K=3 are in flight (tests/fakeapi --max-inflight).

Each configuration gets a fresh state directory, a fresh API and the same queue:
items per minute, and the share of the API's answers that were 429, from the API's
own request log. The agent is the mock CLI's "api" mode by default (BENCH_GOVERNOR_REQUESTS
requests of BENCH_GOVERNOR_REQUEST_S each, 0.2 s of "tool" between them, a 429
retried with the real CLI's backoff: 0.5 s doubling); BENCH_GOVERNOR_AGENT=cli runs
the real Claude Code CLI instead (a Bash round trip per item, each request held
BENCH_GOVERNOR_REQUEST_S), heavier on a small machine. The breaker's retry-storm rule
is off in all three (CIRCUIT_STORM_RETRIES=0), so that what differs is the concurrency.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT

N_ITEMS = int(os.environ.get("BENCH_GOVERNOR_ITEMS", "80"))
K = int(os.environ.get("BENCH_GOVERNOR_K", "3"))
REQUESTS = os.environ.get("BENCH_GOVERNOR_REQUESTS", "4")
REQUEST_S = float(os.environ.get("BENCH_GOVERNOR_REQUEST_S", "1.0"))
AGENT = os.environ.get("BENCH_GOVERNOR_AGENT", "mock")
CLAUDE = ROOT / ".tools/claude/node_modules/.bin/claude"
CONFIGS = [("governor JOBS_MAX=8", ["--set", "JOBS_MAX=8", "--set", "GOVERNOR_STEP_S=2", "--set", "GOVERNOR_WINDOW_S=6"]),
           ("fixed -j 8", ["-j", "8"]), ("fixed -j 3", ["-j", "3"])]


def start_api(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = work / "port"
    api = subprocess.Popen([sys.executable, str(ROOT / "tests/fakeapi/server.py"), "--max-inflight", str(K),
                            "--port-file", str(port_file), "--log", str(work / "requests.jsonl")],
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline:
            api.kill()
            raise SystemExit("bench_governor: the fake API did not start")
        time.sleep(0.05)
    return api, f"http://127.0.0.1:{port_file.read_text().strip()}"


def environment(work: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "ANTHROPIC_", "CLAUDE", "MOCK_"))}
    (work / "home").mkdir(exist_ok=True)
    env.update(HOME=str(work / "home"), HARNESS_QUIET="1", HARNESS_MIN_FREE_MB="0", HARNESS_GC_INTERVAL_S="0",
               ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="sk-test-not-a-secret-0000", DISABLE_AUTOUPDATER="1",
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", MOCK_CLAUDE_REQUESTS=REQUESTS,
               MOCK_CLAUDE_REQUEST_S=f"{REQUEST_S:g}")
    env["CLAUDE_BIN"] = str(CLAUDE if AGENT == "cli" else ROOT / "tests/mocks/claude")
    if AGENT == "cli":
        env["HARNESS_ALLOWED_TOOLS"] = "Bash"
    return env


def run(work: Path, label: str, args: list[str]) -> tuple[float, int, int, int, int]:
    """wall seconds, items succeeded, requests, 429s, the most sessions at once."""
    work.mkdir()
    api, url = start_api(work)
    env = environment(work, url)
    prompt = "[[mock:api]]" if AGENT == "mock" else f"Run a command. [[fake:bash delay={REQUEST_S:g}]]"
    items = b"".join(orjson.dumps({"id": f"g{i:03d}", "prompt": f"item {i} {prompt}"}) + b"\n" for i in range(N_ITEMS))
    state = work / "state"
    try:
        subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(state), "add", "--file", "-"], input=items,
                       env=env, check=True, capture_output=True)
        t0 = time.monotonic()
        subprocess.run([str(ROOT / "loop.sh"), "--state", str(state), "--drain", "--set", "CIRCUIT_STORM_RETRIES=0",
                        *args], env=env, check=True, capture_output=True)
        wall = time.monotonic() - t0
    finally:
        api.terminate()
        api.wait()
    events = [orjson.loads(line) for line in (state / "events.jsonl").read_bytes().splitlines()]
    ok = sum(1 for e in events if e.get("event") == "item.succeeded")
    live = most = 0
    for e in events:
        live += {"session.started": 1, "session.ended": -1}.get(str(e.get("event")), 0)
        most = max(most, live)
    reqs = [orjson.loads(line) for line in (work / "requests.jsonl").read_bytes().splitlines()]
    msgs = [r for r in reqs if str(r.get("path", "")).startswith("/v1/messages")]
    return wall, ok, len(msgs), sum(1 for r in msgs if r.get("status") == 429), most


def main() -> int:
    if AGENT == "cli" and not os.access(CLAUDE, os.X_OK):
        print(f"bench_governor: the Claude Code CLI is not installed at {CLAUDE} (run 'make setup')", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-governor-"))
    print(f"governor: {N_ITEMS} items, agent {AGENT}, an API that refuses above K={K} requests in flight, "
          f"{REQUESTS if AGENT == 'mock' else 'about 3'} requests of {REQUEST_S:g} s per item, {os.cpu_count()} cores")
    print(f"  {'configuration':<20} {'items/min':>9} {'vs -j 3':>8} {'429 share':>9} {'requests':>8} {'most':>4}")
    rows = []
    for n, (label, args) in enumerate(CONFIGS):
        wall, ok, total, refused, most = run(work / f"c{n}", label, args)
        if ok != N_ITEMS:
            print(f"bench_governor: {label}: only {ok} of {N_ITEMS} items succeeded", file=sys.stderr)
            return 1
        rows.append((label, ok / wall * 60, refused / total if total else 0.0, total, most))
    base = rows[-1][1]
    for label, rate, share, total, most in rows:
        print(f"  {label:<20} {rate:>9.1f} {rate / base:>7.2f}x {share:>8.1%} {total:>8} {most:>4}")
    governed = rows[0]
    print(f"  target: the governor's 429 share under 5% ({governed[2]:.1%}: "
          f"{'met' if governed[2] < 0.05 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
