"""cost --transcripts with its scan cache (lib/harness/report/scan_cache.py): every run
reports what a run without the cache reports, while it reads only what changed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
from harness.report.prices import CostMode, PriceBook
from harness.report.scan_cache import ScanCache
from harness.report.transcript_cost import report_json
from harness.report.usage import tally
from test_transcript_cost import SCRIPT, T3, entry, line, synthetic_tree

BOOK = PriceBook()


def both(projects: Path, cache_file: Path, workers: int = 1) -> tuple[dict[str, Any], ScanCache]:
    """The cached run's report, which must equal the uncached one's; and the cache."""
    cache = ScanCache(cache_file)
    got = report_json(projects, tally(projects, CostMode.AUTO, BOOK, workers, cache), BOOK, CostMode.AUTO)
    want = report_json(projects, tally(projects, CostMode.AUTO, BOOK, workers), BOOK, CostMode.AUTO)
    assert got == want
    return got, cache


def test_a_second_run_reads_nothing_and_an_appended_file_only_its_tail(tmp_path: Path) -> None:
    projects = synthetic_tree(tmp_path / "cfg")
    cache_file = tmp_path / "cache" / "c.json"
    first, c = both(projects, cache_file)
    assert (c.reused, c.tails, c.whole) == (0, 0, 4)
    assert oct(cache_file.stat().st_mode & 0o777) == "0o600" and oct(cache_file.parent.stat().st_mode & 0o777) == "0o700"
    again, c = both(projects, cache_file)
    assert again == first and (c.reused, c.tails, c.whole) == (4, 0, 0)
    grown = projects / "p2" / "cccc-3333.jsonl"
    with open(grown, "ab") as fh:  # a whole line, and half of the next (the CLI still writing it)
        fh.write(line(entry("msg_new", "req_new", T3, sid="cccc-3333", o=1000)))
        half = line(entry("msg_more", "req_more", T3, sid="cccc-3333", o=2000))
        cut = half.index(b'"usage":{') + 20  # past the usage mark: a line that is not JSON yet
        fh.write(half[:cut])
    report, c = both(projects, cache_file)
    assert (c.reused, c.tails, c.whole) == (3, 1, 0) and report["malformed_lines"] == first["malformed_lines"] + 1
    with open(grown, "ab") as fh:  # the half line completed
        fh.write(half[cut:])
    report, c = both(projects, cache_file)
    assert (c.tails, report["malformed_lines"]) == (1, first["malformed_lines"])
    assert report["total"]["tokens"]["output"] == first["total"]["tokens"]["output"] + 3000


def test_a_rewritten_truncated_or_removed_file_is_read_again_and_a_bad_cache_is_ignored(tmp_path: Path) -> None:
    projects = synthetic_tree(tmp_path / "cfg")
    cache_file = tmp_path / "c.json"
    both(projects, cache_file)
    b = projects / "p1" / "bbbb-2222.jsonl"
    data = b.read_bytes()
    b.write_bytes(b"X" + data[1:] + line(entry("msg_z", "req_z", T3, sid="bbbb-2222", o=1)))  # same inode, new head
    _, c = both(projects, cache_file)
    assert (c.tails, c.whole) == (0, 1)
    b.write_bytes(data[: len(data) // 3])  # truncated in place
    _, c = both(projects, cache_file)
    assert c.whole == 1
    os.unlink(projects / "p2" / "cccc-3333.jsonl")
    both(projects, cache_file)
    assert str(projects / "p2" / "cccc-3333.jsonl") not in orjson.loads(cache_file.read_bytes())["files"]
    for junk in (b"{not json", b'{"version": 999, "files": {}}', b"[]"):
        cache_file.write_bytes(junk)
        _, c = both(projects, cache_file)
        assert c.whole == 3  # (one of the four was removed above)


def test_two_workers_and_the_command_use_it(tmp_path: Path) -> None:
    projects = synthetic_tree(tmp_path / "cfg")
    cache_file = tmp_path / "c.json"
    both(projects, cache_file, workers=2)
    _, c = both(projects, cache_file, workers=2)
    assert c.reused == 4
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    argv = [str(SCRIPT), "--state", str(tmp_path / "none"), "cost", "--transcripts", str(projects), "--json"]
    cold = subprocess.run(argv, capture_output=True, check=True, env=env).stdout
    assert len(list((tmp_path / "xdg" / "harness").glob("transcript-cost-*.json"))) == 1
    warm = subprocess.run(argv, capture_output=True, check=True, env=env).stdout
    none = subprocess.run([*argv, "--no-cache"], capture_output=True, check=True, env=env).stdout
    assert cold == warm == none
    (tmp_path / "a-file").write_bytes(b"")  # a cache under a file: cannot be made, even by root
    unwritable = subprocess.run([*argv, "--cache", str(tmp_path / "a-file" / "c.json")], capture_output=True, env=env)
    assert unwritable.returncode == 0 and unwritable.stdout == cold
    assert b"cannot write the scan cache" in unwritable.stderr


def test_an_edit_in_place_or_a_regrowth_past_the_head_is_read_again_whole(tmp_path: Path) -> None:
    """What the first bytes alone would not tell: the same size with other bytes after
    them, and a file truncated and written again to beyond where the last run stopped."""
    projects = synthetic_tree(tmp_path / "cfg")
    big = projects / "p2" / "cccc-3333.jsonl"
    filler = b"".join(line(entry(f"m{n}", f"r{n}", T3, sid="cccc-3333", o=1)) for n in range(40))  # past 4 KB
    big.write_bytes(filler + line(entry("msg_e", "req_e", T3, sid="cccc-3333", o=1000)))
    cache_file = tmp_path / "c.json"
    both(projects, cache_file)
    data = big.read_bytes()
    big.write_bytes(data.replace(b'"output_tokens":1000', b'"output_tokens":9000'))  # same size, later bytes
    report, c = both(projects, cache_file)
    assert c.whole == 1 and report["total"]["tokens"]["output"] > 9000
    with open(big, "r+b") as fh:  # truncated to its head, then written again longer than before
        fh.truncate(len(filler) - 100)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\n" + line(entry("msg_f", "req_f", T3, sid="cccc-3333", o=7)) * 3 + filler)
    _, c = both(projects, cache_file)
    assert c.whole == 1


def test_a_fifo_named_like_a_transcript_and_a_foreign_record_do_not_stop_the_report(tmp_path: Path) -> None:
    projects = synthetic_tree(tmp_path / "cfg")
    os.mkfifo(projects / "p2" / "hang.jsonl")
    cache_file = tmp_path / "c.json"
    both(projects, cache_file)
    data = orjson.loads(cache_file.read_bytes())
    for rec in data["files"].values():
        rec["entries"] = [["not", "an", "entry"]]
    cache_file.write_bytes(orjson.dumps(data))
    _, c = both(projects, cache_file)
    assert c.whole == 5  # the four again, and the FIFO, read as nothing (never opened to block)
