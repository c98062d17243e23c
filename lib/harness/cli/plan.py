"""plan.sh's verbs: plan (a goal or a plan file to an ordered plan, printed or queued)
and plan-analyze (a repository's import graph)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.cli.common import Subparsers, store_of
from harness.plan import graph, model, order, queueing, render, session
from harness.plan.errors import PlanError, SessionError
from harness.report.style import Style, visible
from harness.store import queue

# A goal is words, up to a specification of some pages: more does not leave a model's
# context room for the code it must read. Longer specifications belong in a file of
# the repository that the goal names.
MAX_GOAL_BYTES = 1024 * 1024
NUL = b"\0"
# a queue id is RUN.ID, at most 64 characters, and a plan's ids are up to 32
MAX_RUN_CHARS = 64 - 1 - 32


def _repo(path: str) -> Path:
    repo = Path(path)
    if not repo.is_dir():
        raise PlanError(f"no repository at {path} (--repo DIR, or REPO_DIR)")
    return repo.resolve()


def _goal(args: argparse.Namespace) -> str:
    data: bytes
    if args.goal is not None:
        data, where = args.goal.encode("utf-8", "surrogateescape"), "the goal"
    else:
        where = "the goal on stdin" if args.goal_file == "-" else f"the goal in {args.goal_file}"
        try:
            if args.goal_file == "-":
                data = sys.stdin.buffer.read(MAX_GOAL_BYTES + 1)
            else:
                with open(args.goal_file, "rb") as fh:
                    data = fh.read(MAX_GOAL_BYTES + 1)
        except OSError as exc:
            raise PlanError(f"cannot read {args.goal_file}: {exc.strerror}") from None
    if len(data) > MAX_GOAL_BYTES:
        raise PlanError(f"{where} is over {MAX_GOAL_BYTES} bytes (1 MiB): put a long specification in a file "
                        "of the repository and name it in the goal")
    if NUL in data:
        raise PlanError(f"{where} holds a NUL byte (at byte {data.index(NUL)}): a goal is text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{where} is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise PlanError(f"{where} is empty")
    return text


def _load_plan(path: str) -> Any:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return jsonio.loads(data)
    except ValueError as exc:
        raise PlanError(f"{path}: not JSON ({exc})") from None


def _one_line(text: str, limit: int = 300) -> str:
    """Model text for an error line: one line, short, its control characters escaped."""
    flat = visible(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _progress(line: str) -> None:
    if os.environ.get("HARNESS_QUIET") != "1":
        print(f"plan session: {Style(sys.stderr).text(line)}", file=sys.stderr, flush=True)


def _ask(args: argparse.Namespace, repo: Path, run: str) -> tuple[session.Outcome, Path]:
    """Runs the planning session; what it gave (its answer with the goal) and the plan's directory."""
    goal = _goal(args)
    workdir = Path(args.state_dir) / "plans" / run
    try:
        workdir.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        raise PlanError(f"a plan named {run} exists already ({workdir}): choose another --run") from None
    settings = session.Settings(binary=args.claude_bin, bootstrap=Path(args.bootstrap), model=args.model,
                                max_turns=args.max_turns, max_budget_usd=args.max_budget_usd,
                                timeout_s=args.timeout, kill_grace_s=args.kill_grace)
    outcome = session.run(settings, repo, workdir, goal, _progress)
    if outcome.answer is None:
        if outcome.schema_error:
            why = f"its answer did not fit the plan's schema: {_one_line(outcome.schema_error)}"
        else:
            why = f"the model did not answer with one; its last words: {_one_line(outcome.last_words) or '(none)'}"
        raise PlanError(f"the planning session gave no plan ({why}); nothing queued; "
                        f"its stream: {workdir / 'events.jsonl'}")
    if isinstance(outcome.answer, dict):
        outcome.answer = {**outcome.answer, "goal": goal}
    return outcome, workdir


def _run_name(args: argparse.Namespace) -> str:
    run = queueing.default_run_name(time.time()) if args.run is None else queue.check_run(args.run)
    if len(run) > MAX_RUN_CHARS:
        raise PlanError(f"run name {run} is over {MAX_RUN_CHARS} characters (item ids become RUN.ID, at most 64)")
    if args.apply and any(i.get("run") == run for i in store_of(args).items(list(queue.STATES))):
        raise PlanError(f"run {run} exists already: choose another name (--run)")
    return run


def _checked(raw: Any, repo: Path, saved: Path | None) -> model.Plan:
    try:
        return model.check(raw, repo)
    except PlanError as exc:
        if saved is None:
            raise
        raise PlanError(f"{exc}; nothing queued (the answer: {saved}: correct it and give it to --plan)") from None


def cmd_plan(args: argparse.Namespace) -> int:
    repo, run = _repo(args.repo), _run_name(args)
    saved: Path | None = None
    outcome: session.Outcome | None = None
    if args.plan:
        raw = _load_plan(args.plan)
    else:
        try:
            outcome, workdir = _ask(args, repo, run)
        except SessionError as exc:
            print(f"harness: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("harness: interrupted: the planning session was stopped; nothing queued", file=sys.stderr)
            return 130
        raw, saved = outcome.answer, workdir / "plan.json"
        jsonio.write_json(saved, raw, pretty=True)
    plan = _checked(raw, repo, saved)
    ordered = order.order(plan, graph.build(repo))
    ids = queueing.queue_ids(ordered, run)
    if args.apply:
        queueing.apply(store_of(args), ordered, run)
    _report(args, ordered, Made(run, ids, saved, outcome))
    return 0


@dataclass(frozen=True)
class Made:
    """What the command made: the run's name, the queue ids, the saved answer, the session."""

    run: str
    ids: dict[str, str]
    saved: Path | None
    outcome: session.Outcome | None


def _session_doc(o: session.Outcome | None) -> dict[str, Any] | None:
    return None if o is None else {"id": o.session_id, "cost_usd": o.cost_usd}


def _report(args: argparse.Namespace, ordered: order.Ordered, made: Made) -> None:
    if args.json:
        doc = {"run": made.run, "applied": bool(args.apply), "saved": str(made.saved) if made.saved else None,
               "session": _session_doc(made.outcome), **render.plan_doc(ordered, made.ids)}
        sys.stdout.buffer.write(jsonio.dumps(doc, pretty=True) + b"\n")
        return
    st = Style(sys.stdout)
    print(render.plan_text(ordered, st))
    print()
    if made.outcome is not None:
        cost = f"${made.outcome.cost_usd:.4f}" if made.outcome.cost_usd is not None else "cost unknown"
        print(f"planned by session {made.outcome.session_id or '?'} ({cost}); the answer: {made.saved}")
    if args.apply:
        high = sum(1 for i in ordered.plan.items if ordered.priority(i.id) == order.CRITICAL_PRIORITY)
        print(f"queued as run {made.run}: {len(made.ids)} items ({high} {order.CRITICAL_PRIORITY} priority, on the "
              f"critical path); queue.sh run {made.run} shows its progress")
    else:
        print(f"not queued. To queue it as run {made.run}: plan.sh --plan {made.saved or args.plan} "
              f"--repo {args.repo} --run {made.run} --apply")


def cmd_plan_analyze(args: argparse.Namespace) -> int:
    g = graph.build(_repo(args.repo))
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(render.graph_doc(g), pretty=True) + b"\n")
    else:
        print(render.graph_text(g, Style(sys.stdout)))
    return 0


def add_parsers(sub: Subparsers) -> None:
    p = sub.add_parser("plan", help="a goal (or a plan file) to a plan ordered by the code's imports")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--repo", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--goal", help="the goal, as words")
    src.add_argument("--goal-file", help="the goal in a file ('-': stdin)")
    src.add_argument("--plan", help="a plan file (JSON) instead of a session ('-': stdin)")
    p.add_argument("--run", help="the run's name (default plan-YYYYMMDD-HHMMSS)")
    p.add_argument("--apply", action="store_true", help="queue the plan as a run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--claude-bin", default="claude")
    p.add_argument("--bootstrap", default=str(Path(__file__).resolve().parents[3] / "bootstrap" / "plan.md"))
    p.add_argument("--model", default="")
    p.add_argument("--max-turns", type=int, default=0)
    p.add_argument("--max-budget-usd", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--kill-grace", type=float, default=10.0)
    p.set_defaults(fn=cmd_plan)
    p = sub.add_parser("plan-analyze", help="a repository's import graph: summary and layers")
    p.add_argument("--repo", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_plan_analyze)
