"""cost --transcripts against ccusage 20.0.24 run in the same test, and reconcile.

(a) a corpus of transcripts written by the real CLI against the scripted API;
(b) synthetic transcripts with each of ccusage's deduplication cases;
(c) reconcile: a receipt equal to its transcript, a changed one, a missing
transcript, a malformed line, an earlier round in a fix round's copy.

Tokens must be equal; cost is compared in ccusage's three modes with the same
prices on both sides: ccusage's own, read back from it (probe_prices) into a
LiteLLM price file that cost --prices takes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))

from harness.report.prices import CostMode, PriceBook  # noqa: E402
from harness.report.usage import Usage, tally  # noqa: E402

CCUSAGE = ROOT / ".tools" / "ccusage" / "node_modules" / ".bin" / "ccusage"
CLAUDE = ROOT / ".tools" / "claude" / "node_modules" / ".bin" / "claude"
SCRIPT = ROOT / "scripts" / "parse-session-events.sh"
PROBE_TOKENS = (100_000, 1_000_000)  # below and past the 200k tier
KINDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
LITELLM = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
           "cache_creation_input_token_cost")


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def write_tree(root: Path, files: dict[str, list[Any]]) -> Path:
    """root/projects/<path>: each a list of line objects (or raw bytes)."""
    for rel, lines in files.items():
        p = root / "projects" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"".join(x if isinstance(x, bytes) else line(x) for x in lines))
    return root / "projects"


def ccusage(config: Path, mode: str = "auto") -> dict[tuple[str, str], dict[str, Any]]:
    assert CCUSAGE.exists(), "ccusage is not installed: make setup"
    env = {"PATH": os.environ["PATH"], "HOME": str(config), "CLAUDE_CONFIG_DIR": str(config), "NO_COLOR": "1"}
    out = subprocess.run([str(CCUSAGE), "claude", "session", "--json", "--offline", "--mode", mode],
                         env=env, capture_output=True, check=True, timeout=120).stdout
    return {(s["projectPath"], s["sessionId"]): s for s in orjson.loads(out)["sessions"]}


def usage_row(model: str, n: int, ts: str, **tokens: int) -> dict[str, Any]:
    u = {k: tokens.get(k, 0) for k in KINDS}
    return {"type": "assistant", "timestamp": ts, "version": "2.1.197", "sessionId": f"probe-{n}",
            "requestId": f"req_probe{n}", "message": {"id": f"msg_probe{n}", "model": model, "usage": u}}


def probe_prices(tmp: Path, models: set[str]) -> Path:
    """ccusage's prices for these models, read back from its own calculate mode (a
    session per model, token kind and size), as a LiteLLM price file."""
    files: dict[str, list[Any]] = {}
    n = 0
    for m in sorted(models):
        for kind in KINDS:
            for size in PROBE_TOKENS:
                n += 1
                files[f"probe/{m}--{kind}--{size}.jsonl"] = [usage_row(m, n, "2026-01-01T00:00:00.000Z", **{kind: size})]
    write_tree(tmp / "probe", files)
    got = ccusage(tmp / "probe", "calculate")
    table: dict[str, dict[str, float]] = {}
    for m in models:
        row: dict[str, float] = {}
        for kind, field in zip(KINDS, LITELLM, strict=True):
            base = got[("probe", f"{m}--{kind}--{PROBE_TOKENS[0]}")]["totalCost"] / PROBE_TOKENS[0]
            big = got[("probe", f"{m}--{kind}--{PROBE_TOKENS[1]}")]["totalCost"]
            above = (big - 200_000 * base) / (PROBE_TOKENS[1] - 200_000)
            row[field] = base
            if not math.isclose(above, base, rel_tol=1e-9, abs_tol=1e-15):
                row[field + "_above_200k_tokens"] = above
        table[m] = row
    out = tmp / "ccusage-prices.json"
    out.write_bytes(orjson.dumps(table))
    return out


def assert_same(ours: Usage, theirs: dict[tuple[str, str], dict[str, Any]], cost: bool = True) -> None:
    """Every session's tokens (and cost) equal to ccusage's, and the same sessions."""
    assert set(ours.sessions) == set(theirs)
    for key, t in ours.sessions.items():
        s = theirs[key]
        assert (t.input, t.output, t.cache_read, t.cache_write) == (
            s["inputTokens"], s["outputTokens"], s["cacheReadTokens"], s["cacheCreationTokens"]), key
        if cost:
            assert math.isclose(t.cost_usd, s["totalCost"], rel_tol=1e-9, abs_tol=1e-12), (key, t.cost_usd, s)
        assert sorted(t.models) == sorted(s["modelsUsed"]), key


def compare_all_modes(tmp: Path, config: Path) -> Usage:
    models = {m for s in ccusage(config).values() for m in s["modelsUsed"]}
    prices = PriceBook.litellm(probe_prices(tmp, models))
    for mode in CostMode:
        ours = tally(config / "projects", mode, prices)
        assert_same(ours, ccusage(config, mode.value))
    return tally(config / "projects", CostMode.AUTO, prices)


# (a) the real CLI against the scripted API

class FakeApi:
    def __init__(self, tmp: Path) -> None:
        port_file = tmp / "port"
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fakeapi" / "server.py"),
                                      "--port-file", str(port_file)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and self.proc.poll() is None, "the scripted API did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run_cli(home: Path, url: str, cwd: Path, prompt: str, *flags: str) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": url,
           "ANTHROPIC_API_KEY": "sk-test-not-a-secret-0000", "IS_SANDBOX": "1", "CLAUDE_CODE_MAX_RETRIES": "1",
           "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    subprocess.run([str(CLAUDE), "-p", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions",
                    "--allowedTools", "Bash,Write,Read", *flags], input=prompt.encode(), cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=120)


@pytest.fixture(scope="module")
def cli_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """HOME/.claude of six CLI sessions in two projects: tool use over several turns,
    set usage mixes, and a conversation resumed (two rounds in one transcript)."""
    tmp = tmp_path_factory.mktemp("cli")
    home, one, two = tmp / "home", tmp / "work-one", tmp / "work-two"
    for d in (home, one, two):
        d.mkdir()
        subprocess.run(["git", "init", "-q", str(d)], check=True)
    api = FakeApi(tmp)
    try:
        resumed = str(uuid.uuid4())
        run_cli(home, api.url, one, "Do it. [[fake:write_commit]]")
        run_cli(home, api.url, one, "Run it. [[fake:bash]]", "--session-id", resumed)
        run_cli(home, api.url, one, "Fix it. [[fake:answer in=7 out=9 cr=11 cw=13]]", "--resume", resumed)
        run_cli(home, api.url, two, "Big. [[fake:big]]")
        run_cli(home, api.url, two, "Priced. [[fake:answer in=1200 out=345 cr=67000 cw=8900]]")
        run_cli(home, api.url, two, "Again. [[fake:write_commit file=b.txt]]")
    finally:
        api.stop()
    yield home / ".claude"


def test_cli_transcripts_equal_ccusage(cli_corpus: Path, tmp_path: Path) -> None:
    ours = compare_all_modes(tmp_path, cli_corpus)
    assert len(ours.sessions) >= 5 and ours.duplicates > 0  # one line per content block
    assert ours.total.output > 0 and ours.malformed == 0


def test_cli_transcripts_through_the_script(cli_corpus: Path, tmp_path: Path) -> None:
    """The command a person runs: JSON with per-session and total figures, tokens equal
    to ccusage's; a table without --json."""
    got = subprocess.run([str(SCRIPT), "--state", str(tmp_path / "none"), "cost", "--transcripts",
                          str(cli_corpus / "projects"), "--json"], capture_output=True, check=True)
    report = orjson.loads(got.stdout)
    theirs = ccusage(cli_corpus)
    assert {(s["project"], s["session"]) for s in report["sessions"]} == set(theirs)
    for s in report["sessions"]:
        c = theirs[(s["project"], s["session"])]
        assert s["tokens"] == {"input": c["inputTokens"], "output": c["outputTokens"],
                               "cache_read": c["cacheReadTokens"], "cache_write": c["cacheCreationTokens"]}
    assert report["total"]["tokens"]["output"] == sum(c["outputTokens"] for c in theirs.values())
    table = subprocess.run([str(SCRIPT), "--state", str(tmp_path / "none"), "cost", "--transcripts",
                            str(cli_corpus / "projects")], capture_output=True, text=True, check=True).stdout
    assert "total" in table and "CACHE WRITE" in table


# (b) synthetic transcripts: each dedup case, several models

def entry(mid: str | None, req: str | None, ts: str, model: str = "claude-opus-4-8", sid: str | None = None,
          side: bool | None = None, cost: float | None = None, split: tuple[int, int] | None = None,
          **tokens: int) -> dict[str, Any]:
    u: dict[str, Any] = {"input_tokens": tokens.get("i", 10), "output_tokens": tokens.get("o", 5),
                         "cache_read_input_tokens": tokens.get("cr", 100), "cache_creation_input_tokens": tokens.get("cw", 50)}
    if split is not None:
        u["cache_creation"] = {"ephemeral_5m_input_tokens": split[0], "ephemeral_1h_input_tokens": split[1]}
    d: dict[str, Any] = {"type": "assistant", "timestamp": ts, "version": "2.1.197", "uuid": str(uuid.uuid4()),
                         "message": {"model": model, "type": "message", "role": "assistant",
                                     "content": [{"type": "text", "text": "ok"}], "usage": u}}
    if mid is not None:
        d["message"]["id"] = mid
    for key, value in (("requestId", req), ("sessionId", sid), ("isSidechain", side), ("costUSD", cost)):
        if value is not None:
            d[key] = value
    return d


def truncated(obj: dict[str, Any]) -> bytes:
    raw = line(obj)
    return raw[: raw.index(b'"usage":{') + 20] + b"\n"


T0, T1, T2, T3 = (f"2026-03-01T10:00:0{n}.000Z" for n in range(4))
SONNET, HAIKU = "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"


def synthetic_tree(root: Path) -> Path:
    a, b, c = "aaaa-1111", "bbbb-2222", "cccc-3333"
    return write_tree(root, {
        f"p1/{a}.jsonl": [
            # one response, three content blocks, usage growing: the largest counts
            entry("msg_r1", "req_1", T0, sid=a, o=1), entry("msg_r1", "req_1", T1, sid=a, o=40),
            entry("msg_r1", "req_1", T2, sid=a, o=12),
            # costUSD on the line (auto and display use it), a 1-hour cache write, past 200k on sonnet
            entry("msg_r2", "req_2", T1, model=SONNET, sid=a, cost=0.125, i=250_000, cw=900, split=(600, 300)),
            entry(None, "req_3", T2, sid=a), entry(None, "req_3", T2, sid=a),  # no message id: both count
            entry("msg_s", "req_4", T3, model="<synthetic>", sid=a, i=0, o=0, cr=0, cw=0),
            {"type": "user", "timestamp": T3, "message": {"role": "user", "content": "next"}},
            entry("msg_v", "req_5", T3, sid=a) | {"version": "nightly"},  # no semver: skipped
            line(entry("msg_n", "req_6", T3, sid=a)).replace(b'"version":"2.1.197"', b'"version":null'),
            truncated(entry("msg_t", "req_7", T3, sid=a)),  # a write cut short: malformed
        ],
        f"p1/{a}/subagents/agent-1.jsonl": [
            entry("msg_r1", "req_x", T1, sid=a, side=True, o=99),  # a replay at the kept entry's time: once
            entry("msg_r1", "req_y", "2026-03-01T10:00:09.000Z", sid=a, side=True),  # another time: counts
            entry("msg_sub", "req_sub", T2, model=HAIKU, sid=a, side=True, i=3, o=700),
        ],
        f"p1/{b}.jsonl": [
            entry("msg_r2", "req_2", T1, model=SONNET, sid=b, i=250_000, o=800, cw=900),  # larger: moves here
            entry("msg_nr", None, T0, sid=b, o=3), entry("msg_nr", None, T3, sid=b, o=30),  # no request id: once
            entry("msg_fake", "req_f", T2, model="claude-fake-9", sid=b, o=77),  # a model no table knows
        ],
        f"p2/{c}.jsonl": [
            entry("msg_nr", None, T0, sid=c, o=3),  # the same id in another session: its own
            entry("msg_h", "req_h", "2026-03-01T11:00:00+02:00", model=HAIKU, sid=c, cost=0.5, o=8),
            entry("msg_h", "req_h2", "2026-03-01T09:00:00Z", model=HAIKU, sid=c, side=True, o=80),  # same instant
        ],
    })


def test_synthetic_duplicates_sidechains_and_models_equal_ccusage(tmp_path: Path) -> None:
    synthetic_tree(tmp_path / "cfg")
    ours = compare_all_modes(tmp_path, tmp_path / "cfg")
    assert ours.malformed == 1
    a = ours.sessions[("p1", "aaaa-1111")]
    assert a.output == 40 + 5 + 5 + 0 + 5 + 700  # r1's largest, no-id twice, synthetic, the later replay, sub
    assert ("p1", "bbbb-2222") in ours.sessions and ours.sessions[("p1", "bbbb-2222")].input >= 250_000
    assert ours.sessions[("p2", "cccc-3333")].output == 3 + 8


def test_the_three_kinds_of_directory(tmp_path: Path) -> None:
    """A projects directory, one project's directory, and a tree of the harness's
    session directories (state/sessions/<id>/transcript.jsonl) name the same sessions."""
    one = [entry("m1", "r1", T0, o=7)]
    projects = write_tree(tmp_path / "cfg", {"-srv-repo/5f0c.jsonl": one, "-srv-repo/5f0c/subagents/a.jsonl":
                                             [entry("m2", "r2", T0, side=True, o=3)]})
    assert {k: t.output for k, t in tally(projects, CostMode.AUTO, PriceBook()).sessions.items()} == {
        ("-srv-repo", "5f0c"): 10}
    assert set(tally(projects / "-srv-repo", CostMode.AUTO, PriceBook()).sessions) == {("-srv-repo", "5f0c")}
    sessions = tmp_path / "state" / "sessions"
    for sid in ("ses_1", "ses_2"):
        (sessions / sid).mkdir(parents=True)
        (sessions / sid / "transcript.jsonl").write_bytes(line(entry(f"m-{sid}", "r", T0, o=7)))
    assert set(tally(sessions, CostMode.AUTO, PriceBook()).sessions) == {("sessions", "ses_1"), ("sessions", "ses_2")}


def test_prices_harness_and_file(tmp_path: Path) -> None:
    """The harness's prices by default (the receipts'); a LiteLLM file replaces them,
    and a model the file lacks costs nothing; a bad file is one line of error, exit 2."""
    root = write_tree(tmp_path / "cfg", {"p/s.jsonl": [entry("m1", "r1", T0, cr=2000, cw=1000, i=50, o=20)]})
    assert math.isclose(tally(root, CostMode.CALCULATE, PriceBook()).total.cost_usd, 0.008)
    prices = tmp_path / "p.json"
    prices.write_bytes(orjson.dumps({"claude-opus": {"input_cost_per_token": 1e-6}}))
    assert math.isclose(tally(root, CostMode.CALCULATE, PriceBook.litellm(prices)).total.cost_usd, 50e-6)
    prices.write_bytes(orjson.dumps({"other": {"input_cost_per_token": 1e-6}}))
    assert tally(root, CostMode.CALCULATE, PriceBook.litellm(prices)).total.cost_usd == 0
    prices.write_bytes(b"[1, 2]")
    got = subprocess.run([str(SCRIPT), "--state", str(tmp_path), "cost", "--transcripts", str(root), "--prices",
                          str(prices)], capture_output=True, text=True, check=False)
    assert got.returncode == 2 and got.stderr.count("\n") == 1 and "not a JSON object" in got.stderr


# (c) reconcile

def session(state: Path, name: str, receipt: dict[str, Any] | None, transcript: list[Any] | None,
            started: float = 1_772_359_200.0, ended: float = 1_772_359_260.0) -> Path:
    d = state / "sessions" / name
    d.mkdir(parents=True)
    (d / "meta.json").write_bytes(orjson.dumps({"session_id": name, "item_id": f"item-{name[-1]}",
                                                "started_epoch": started, "ended_epoch": ended}))
    if receipt is not None:
        (d / "metrics.json").write_bytes(orjson.dumps(receipt))
    if transcript is not None:
        (d / "transcript.jsonl").write_bytes(b"".join(x if isinstance(x, bytes) else line(x) for x in transcript))
    return d


IN_RUN = ("2026-03-01T10:00:10.000Z", "2026-03-01T10:00:20.000Z")  # within started..ended above
EARLIER = "2026-03-01T09:00:00.000Z"


def run_of(tokens: tuple[int, int, int, int], mid: str, when: str) -> list[Any]:
    """One response as the CLI writes it: two content blocks, the same usage."""
    i, o, cr, cw = tokens
    return [entry(mid, f"req_{mid}", when, i=i, o=o, cr=cr, cw=cw) for _ in range(2)]


def receipt(i: int, o: int, cr: int, cw: int, cost: float) -> dict[str, Any]:
    return {"tokens": {"input": i, "output": o, "cache_read": cr, "cache_write": cw}, "cost_usd": cost}


def reconcile(state: Path, *args: str) -> tuple[int, dict[str, Any]]:
    got = subprocess.run([str(SCRIPT), "--state", str(state), "reconcile", "--json", *args],
                         capture_output=True, check=False)
    return got.returncode, orjson.loads(got.stdout)


def test_reconcile_flags_drift_and_reports_missing_transcripts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # two responses of opus-4-8 (5, 25, 0.5, 6.25 $/Mtok): 2 x (50, 20, 2000, 1000) = $0.016
    same = run_of((50, 20, 2000, 1000), "m1", IN_RUN[0]) + run_of((50, 20, 2000, 1000), "m2", IN_RUN[1])
    session(state, "ses_a", receipt(100, 40, 4000, 2000, 0.016), same)
    session(state, "ses_b", receipt(100, 40, 4000, 2000, 0.0175), same)  # the receipt says more
    session(state, "ses_c", receipt(1, 1, 1, 1, 0.1), None)  # finished before transcripts were kept
    session(state, "ses_d", receipt(100, 40, 4000, 2000, 0.016), [*same, b'{"type":"assistant","message":{"usage":{"inp\n'])
    # a fix round's copy holds the round before it: that one is not this receipt's
    session(state, "ses_e", receipt(100, 40, 4000, 2000, 0.016), run_of((9, 9, 9, 9), "m0", EARLIER) + same)
    session(state, "ses_f", None, same)  # still running: no receipt, left out
    rc, out = reconcile(state)
    assert rc == 1
    by = {s["session_id"]: s for s in out["sessions"]}
    assert {k: v["status"] for k, v in by.items()} == {
        "ses_a": "ok", "ses_b": "drift", "ses_c": "no_transcript", "ses_d": "ok", "ses_e": "ok"}
    assert by["ses_b"]["drift"] == ["cost_usd"] and by["ses_c"]["transcript"] is None
    assert by["ses_a"]["transcript"]["tokens"] == {"input": 100, "output": 40, "cache_read": 4000, "cache_write": 2000}
    assert by["ses_d"]["transcript"]["malformed_lines"] == 1
    assert by["ses_e"]["transcript"]["outside_session"] == 2
    assert out["counts"] == {"ok": 3, "drift": 1, "no_transcript": 1}
    assert reconcile(state, "ses_a", "ses_c", "ses_d", "ses_e")[0] == 0
    assert reconcile(state, "ses_b", "--tolerance", "10")[0] == 0  # 9% off: within 10%
    text = subprocess.run([str(SCRIPT), "--state", str(state), "reconcile", "ses_b"], capture_output=True, text=True,
                          check=False)
    assert text.returncode == 1 and "DRIFT (cost_usd)" in text.stdout and "$0.017500" in text.stdout


def test_reconcile_flags_a_token_kind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    session(state, "ses_a", receipt(100, 41, 4000, 2000, 0.016),
            run_of((50, 20, 2000, 1000), "m1", IN_RUN[0]) + run_of((50, 20, 2000, 1000), "m2", IN_RUN[1]))
    rc, out = reconcile(state)
    assert rc == 1 and out["sessions"][0]["drift"] == ["output"]
