"""The operator's verbs beside the queue's: worktrees and status; and the helpers'
own: usage (a verb's --help) and receipt."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from harness import config, jsonio
from harness.cli.common import EXIT_REFUSED, Subparsers, cell, now_of, with_policy, with_state
from harness.pipeline.policy import Policy


def cmd_status(args: argparse.Namespace) -> int:
    from harness.report import status

    return status.main(Path(args.state_dir), Policy.from_pairs(args.cfg), args.heartbeat_s, args.json, args.watch,
                       args.no_color)


def cmd_worktrees(args: argparse.Namespace) -> int:
    from harness.pipeline import worktrees

    state_dir, now = Path(args.state_dir), now_of(args)
    if args.action == "prune" and args.merged:
        p = Policy.from_pairs(args.cfg)
        try:
            branches = worktrees.prune_merged(state_dir, args.repo or p.REPO_DIR, p.TARGET_BRANCH, args.dry_run)
        except ValueError as exc:
            raise config.ConfigError(str(exc)) from None
        verb = "would delete" if args.dry_run else "deleted"
        for branch in branches:
            print(f"{verb} branch {branch}")
        print(f"{verb} {len(branches)} branch(es) wholly on {p.TARGET_BRANCH}")
        return 0
    if args.action == "prune":
        gone = worktrees.prune(state_dir, args.repo, args.older_than_days * 86400, args.dry_run, now)
        verb = "would remove" if args.dry_run else "removed"
        for path in gone:
            print(f"{verb} {path}")
        print(f"{verb} {len(gone)} worktree(s)")
        return 0
    rows = worktrees.kept(state_dir, now)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(rows, pretty=True) + b"\n")
        return 0
    print(f"{'SESSION':<18} {'ITEM':<24} {'VERDICT':<14} {'AGE':>6}  BRANCH / PATH")
    for r in rows:
        age = f"{r['age_s'] / 86400:.1f}d" if r["age_s"] >= 86400 else f"{r['age_s'] / 3600:.1f}h"
        print(f"{r['session'][:18]:<18} {cell(r['item'], 24):<24} {cell('live' if r['live'] else r['verdict'], 14):<14} "
              f"{age:>6}  {r['branch'] or r['path']}")
    return 0


def verb_usage(script: Path, verb: str) -> str | None:
    """One command's usage from a script's help block (its leading comments): the
    "#   <command> ..." lines and their deeper-indented continuations, under the Usage
    line with "<command> [args]" replaced by the command's first syntax (cut where two
    spaces begin its description). None when the block names no such command."""
    block: list[str] = []
    for line in script.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    usage = next((b.removeprefix("Usage: ") for b in block if b.startswith("Usage: ")), script.name)
    own, body = False, []
    for b in block:
        if b.startswith(f"  {verb} ") or b == f"  {verb}":
            own = True
            body.append(b)
        elif own and b.startswith("   "):
            body.append(b)
        else:
            own = False
    if not body:
        return None
    syntax = re.split(r"\s{2,}", body[0].strip(), maxsplit=1)[0]
    return (f"Usage: {usage.split('<command>')[0]}{syntax}\n\n" + "\n".join(body)
            + f"\n\n{script.name} --help: every command, the options and the exit codes\n")


def cmd_usage(args: argparse.Namespace) -> int:
    text = verb_usage(Path(args.script), args.verb)
    if text is None:
        print(f"harness: {Path(args.script).name} has no command {args.verb!r} (see --help)", file=sys.stderr)
        return EXIT_REFUSED
    sys.stdout.write(text)
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    from harness.pipeline import receipt
    print(receipt.line(jsonio.read_json(Path(args.session_dir) / "metrics.json")))
    return 0



def cmd_doctor(args: argparse.Namespace) -> int:
    from harness.ops import doctor

    cfg = dict(kv.split("=", 1) for kv in args.cfg if "=" in kv)
    try:
        return doctor.main(cfg, args.bash_version, args.json, args.user)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None


def add_parsers(sub: Subparsers) -> None:
    """worktrees, status, doctor, and the helpers' own: usage, receipt."""
    p = sub.add_parser("doctor")
    p.add_argument("--cfg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--bash-version", default="")
    p.add_argument("--user", default="", help="check for this user (the loop's, as its unit names it)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_doctor)
    p = with_state(sub, "worktrees")
    p.add_argument("action", choices=["list", "prune"])
    p.add_argument("--repo", default="")
    p.add_argument("--older-than-days", type=float, default=config.default("WORKTREE_MAX_AGE_DAYS"))
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--merged", action="store_true", help="delete the branches of succeeded items wholly on TARGET_BRANCH")
    p.add_argument("--json", action="store_true")
    with_policy(p)
    p.set_defaults(fn=cmd_worktrees)
    p = with_state(sub, "status")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--heartbeat-s", type=float, default=config.default("HEARTBEAT_S"))
    p.add_argument("--no-color", action="store_true")
    with_policy(p)
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("usage", help="one command's usage, from a script's help block (its --help)")
    p.add_argument("--script", required=True)
    p.add_argument("verb")
    p.set_defaults(fn=cmd_usage)
    p = sub.add_parser("receipt")
    p.add_argument("--session-dir", required=True)
    p.set_defaults(fn=cmd_receipt)

