"""Prometheus metrics, read from the store at each scrape (prometheus_client).

A custom collector, so that every number is the store's own (several servers, or
the loop's textfile, never disagree): counters from the attempts (one per finished
session) and the audit log, gauges from the queue, the leases, the breaker, the
pause and the runs, histograms from the attempts' wall time, time to first token
and verify time. Names follow Prometheus's conventions: a unit suffix in base
units (`_seconds`, `_usd`), `_total` on counters, and label values from bounded
sets only (verdicts from the verdict table, token kinds, HTTP status classes,
queue states, breaker states; runs only while active). No session or item id is
ever a label.

    harness_sessions_total{verdict}          finished sessions
    harness_tokens_total{kind}               input, output, cache_read, cache_write
    harness_cost_usd_total                   what the sessions cost
    harness_api_retries_total{status}        the CLI's API retries, by HTTP status
    harness_stalls_total                     sessions the harness stopped as stalled
    harness_fix_rounds_total                 fix-round sessions
    harness_integrations_total{result}       merge queue: landed, failed, deferred, retried
    harness_running_sessions                 live leases
    harness_queue_items{state}               items by state
    harness_breaker_state{state}             1 for the breaker's state, 0 for the others
    harness_pause_until_timestamp_seconds    when a pause ends (0: none)
    harness_run_progress_ratio{run}          finished share of each active run
    harness_run_eta_seconds{run}             each active run's ETA (absent: too little data)
    harness_governor_target                  sessions at once the governor allows (JOBS_MAX; absent without)
    harness_governor_cause{cause}            1 for why it last moved: start, clean, hold, storm, warning
    harness_governor_throttled_ratio         share of requests refused 429/529 in its window
    harness_session_wall_seconds             histogram
    harness_session_ttft_seconds             histogram: time to the first streamed message
    harness_verify_seconds                   histogram
    harness_claim_to_exec_seconds            histogram: from the claim to the agent's exec
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from harness import jsonio
from harness.pipeline.verdicts import VERDICTS
from harness.store import Store, open_store, queue
from harness.store.attempts import TOKEN_KINDS

BREAKER_STATES = ("closed", "open", "half_open")
INTEGRATION_EVENTS = {"item.integrated": "landed", "integrate.failed": "failed", "integrate.deferred": "deferred",
                      "integrate.retry": "retried", "integrate.error": "error"}
# seconds: sessions last seconds to hours
WALL_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)
TTFT_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
VERIFY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
CLAIM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: str) -> str:
    """An HTTP status as a bounded label value: the number for the ones that matter, else its class."""
    if status in ("429", "500", "502", "503", "504", "529", "401", "403", "400"):
        return status
    return f"{status[0]}xx" if status[:1].isdigit() and len(status) == 3 else "other"


def histogram(name: str, doc: str, values: Iterable[float], buckets: tuple[float, ...]) -> HistogramMetricFamily:
    counts = [0] * len(buckets)
    total, n = 0.0, 0
    for v in values:
        n += 1
        total += v
        for i, bound in enumerate(buckets):
            if v <= bound:
                counts[i] += 1
    cumulative = [(str(b), c) for b, c in zip(buckets, counts, strict=True)] + [("+Inf", n)]
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=total)


class StoreCollector(Collector):
    """Everything /metrics shows, computed from the store when scraped."""

    def __init__(self, state_dir: Path, clock: Any = time.time) -> None:
        self.state_dir = state_dir
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        store = open_store(self.state_dir)
        rows = store.attempts()
        yield from self._counters(store, rows)
        yield from self._gauges(store)
        yield histogram("harness_session_wall_seconds", "Wall time of finished sessions.",
                        (r["wall_s"] for r in rows if r.get("wall_s") is not None), WALL_BUCKETS)
        yield histogram("harness_session_ttft_seconds", "Time from a session's start to its first streamed message.",
                        (r["ttft_s"] for r in rows if r.get("ttft_s") is not None), TTFT_BUCKETS)
        yield histogram("harness_verify_seconds", "How long the verify command ran.",
                        (r["verify_s"] for r in rows if r.get("verify_s") is not None), VERIFY_BUCKETS)
        yield histogram("harness_claim_to_exec_seconds", "From a claim to the agent's exec.",
                        (r["claim_s"] for r in rows if r.get("claim_s") is not None), CLAIM_BUCKETS)

    def _counters(self, store: Store, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        by_verdict = dict.fromkeys(VERDICTS, 0)
        tokens = dict.fromkeys(TOKEN_KINDS, 0)
        retries: dict[str, float] = {}
        cost, fixes = 0.0, 0
        for r in rows:
            verdict = r.get("verdict") if r.get("verdict") in by_verdict else "other"
            by_verdict[str(verdict)] = by_verdict.get(str(verdict), 0) + 1
            for k in TOKEN_KINDS:
                tokens[k] += int(r.get(k) or 0)
            cost += float(r.get("cost_usd") or 0)
            fixes += bool(r.get("fix_round"))
            for status, n in (jsonio.loads(r["retries"]) if r.get("retries") else {}).items():
                label = status_class(str(status))
                retries[label] = retries.get(label, 0) + float(n)
        c = CounterMetricFamily("harness_sessions", "Finished sessions, by verdict.", labels=["verdict"])
        for verdict, n in by_verdict.items():
            c.add_metric([verdict], n)
        yield c
        c = CounterMetricFamily("harness_tokens", "Tokens billed, by kind.", labels=["kind"])
        for kind, n in tokens.items():
            c.add_metric([kind], n)
        yield c
        yield CounterMetricFamily("harness_cost_usd", "What the finished sessions cost, in US dollars.", value=cost)
        c = CounterMetricFamily("harness_api_retries", "The agent's API retries, by HTTP status.", labels=["status"])
        for status, n in sorted(retries.items()):
            c.add_metric([status], n)
        yield c
        yield CounterMetricFamily("harness_stalls", "Sessions stopped as stalled.", value=by_verdict.get("stalled", 0))
        yield CounterMetricFamily("harness_fix_rounds", "Fix-round sessions.", value=fixes)
        counts = store.event_counts(list(INTEGRATION_EVENTS))
        c = CounterMetricFamily("harness_integrations", "The merge queue's outcomes.", labels=["result"])
        for event, result in INTEGRATION_EVENTS.items():
            c.add_metric([result], counts.get(event, 0))
        yield c

    def _gauges(self, store: Store) -> Iterator[Metric]:
        from harness.pipeline.breaker import fresh
        from harness.pipeline.policy import Policy
        from harness.report import runs

        now = self.clock()
        states = dict.fromkeys(queue.STATES, 0)
        for state in store.states().values():
            states[state] = states.get(state, 0) + 1
        yield GaugeMetricFamily("harness_running_sessions", "Sessions holding a lease.", value=len(store.live()))
        g = GaugeMetricFamily("harness_queue_items", "Items by state.", labels=["state"])
        for state, n in states.items():
            g.add_metric([state], n)
        yield g
        with store.breaker(fresh(Policy())) as record:
            current = str(record.get("state") or "closed")
        g = GaugeMetricFamily("harness_breaker_state", "1 for the circuit breaker's state.", labels=["state"])
        for state in BREAKER_STATES:
            g.add_metric([state], 1.0 if state == current else 0.0)
        yield g
        pause = store.pause() or {}
        until = pause.get("until_epoch")
        yield GaugeMetricFamily("harness_pause_until_timestamp_seconds", "When the pause ends (epoch s); 0: none.",
                                value=float(until) if isinstance(until, (int, float)) and until > now else 0.0)
        progress = GaugeMetricFamily("harness_run_progress_ratio", "Finished share of each active run.",
                                     labels=["run"])
        eta = GaugeMetricFamily("harness_run_eta_seconds", "Each active run's ETA.", labels=["run"])
        for run in runs.runs(store, now):
            if run.state != "running":
                continue
            progress.add_metric([run.name], run.done / run.total if run.total else 0.0)
            if run.eta is not None and run.eta.seconds is not None:
                eta.add_metric([run.name], run.eta.seconds)
        yield progress
        yield eta
        yield from _governor(store, now)


GOVERNOR_CAUSES = ("start", "clean", "hold", "storm", "warning")


def _governor(store: Store, now: float) -> Iterator[Metric]:
    """The governor's target and why (its last cause), while a loop keeps it (JOBS_MAX)."""
    from harness.pipeline import governor

    g = governor.status(store, now)
    if g is None:
        return
    yield GaugeMetricFamily("harness_governor_target", "Sessions at once the governor allows (every host's).",
                            value=g["target"])
    cause = GaugeMetricFamily("harness_governor_cause", "1 for the cause of the governor's last decision.",
                              labels=["cause"])
    for c in GOVERNOR_CAUSES:
        cause.add_metric([c], 1.0 if c == g["cause"] else 0.0)
    yield cause
    yield GaugeMetricFamily("harness_governor_throttled_ratio", "Share of API requests refused 429/529 in the "
                            "governor's window.", value=g["throttled_share"])


def registry(state_dir: Path) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(state_dir))
    return reg


def write_textfile(state_dir: Path, path: Path) -> None:
    """The metrics for node_exporter's textfile collector, written atomically (a temp
    file in the same directory, then a rename) and readable by others (0644: the
    harness's umask is 077, and node_exporter runs as its own user)."""
    from prometheus_client import generate_latest

    data = generate_latest(registry(state_dir))
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o755)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
