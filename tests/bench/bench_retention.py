"""Retention (ops/retention.py): gc over many finished sessions, and reading
compressed sessions against uncompressed ones.

    .venv/bin/python tests/bench/bench_retention.py [--out .bench/retention.json]

Makes BENCH_GC_SESSIONS (10,000) finished sessions of succeeded items in a SQLite
state directory, each with a stream of BENCH_GC_STREAM_KB (24 kB) written by
gen_stream.py (deltas and all, as the CLI prints them with partial messages) and a
receipt. Then, in the same run:

- every session's facts read (stream/facts.scan: what summary, metrics --recompute
  and the receipts read) from the raw streams;
- gc compressing all of them (RETAIN_RAW_DAYS passed): its time, the bytes before
  and after, and sessions per second;
- the same facts read again from the compressed streams: their time against the
  raw reading (target: at most 2x), and equal facts for every session;
- gc removing all of them (RETAIN_DAYS passed): its time and the bytes freed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT

sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(Path(__file__).parent))
import gen_stream
from harness.ops import retention
from harness.store import open_store
from harness.stream import facts

N = int(os.environ.get("BENCH_GC_SESSIONS", "10000"))
STREAM_KB = int(os.environ.get("BENCH_GC_STREAM_KB", "24"))
TARGET_READ_RATIO = 2.0
DAY = 86400.0


def build(state: Path, template: Path) -> list[Path]:
    """N finished sessions of succeeded items (the store's rows set directly: a claim each would take minutes)."""
    store = open_store(state)
    store.init()
    store.add([("bench", {"id": f"i{k:05d}", "prompt": "p"}) for k in range(N)])
    store.db.execute("UPDATE items SET state = 'succeeded'")  # type: ignore[attr-defined]
    store.db.commit()  # type: ignore[attr-defined]
    data, ended = template.read_bytes(), time.time() - 30 * DAY
    dirs = []
    for k in range(N):
        d = state / "sessions" / f"ses_bench-{k:05d}"
        d.mkdir(parents=True)
        (d / "events.jsonl").write_bytes(data)
        (d / "meta.json").write_bytes(orjson.dumps({"item_id": f"i{k:05d}", "ended_epoch": ended}))
        (d / "metrics.json").write_bytes(b"{}")
        dirs.append(d)
    return dirs


def read_all(dirs: list[Path]) -> tuple[float, list[tuple[int, int, str, dict[str, int]]]]:
    t = time.perf_counter()
    out = []
    for d in dirs:
        f = facts.scan(d / "events.jsonl")
        out.append((f.stats.lines, f.events, f.last_assistant_text, f.streamed_tokens()))
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "retention.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-gc-"))
    try:
        gen_stream.write(str(work / "template.jsonl"), STREAM_KB * 1024)
        stream_bytes = (work / "template.jsonl").stat().st_size
        dirs = build(work / "state", work / "template.jsonl")
        raw_s, raw_facts = read_all(dirs)
        t = time.perf_counter()
        c = retention.gc(work / "state", raw_days=7, keep_days=0, now=time.time())
        gc_s = time.perf_counter() - t
        gz_s, gz_facts = read_all(dirs)
        t = time.perf_counter()
        r = retention.gc(work / "state", raw_days=7, keep_days=14, now=time.time())
        rm_s = time.perf_counter() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = gz_s / raw_s
    out = {"sessions": N, "stream_bytes": stream_bytes, "read_raw_s": raw_s, "gc_compress_s": gc_s,
           "compressed": c.compressed, "bytes_before": c.bytes_before, "bytes_after": c.bytes_after,
           "read_compressed_s": gz_s, "read_ratio": ratio, "same_facts": raw_facts == gz_facts,
           "gc_remove_s": rm_s, "removed": r.removed, "freed": r.freed}
    print(f"retention: {N} finished sessions, a {stream_bytes / 1024:.0f} kB stream each "
          f"({N * stream_bytes / 2**20:.0f} MB)")
    print(f"  gc, compress: {gc_s:.1f} s ({N / gc_s:.0f} sessions/s), {c.bytes_before / 2**20:.0f} MB -> "
          f"{c.bytes_after / 2**20:.1f} MB ({c.bytes_before / max(c.bytes_after, 1):.1f}x smaller)")
    print(f"  gc, remove:   {rm_s:.1f} s ({N / rm_s:.0f} sessions/s), {r.freed / 2**20:.0f} MB freed")
    print(f"  facts of every session (summary, metrics --recompute): raw {raw_s:.1f} s, compressed {gz_s:.1f} s: "
          f"{ratio:.2f}x; the same facts: {'yes' if out['same_facts'] else 'NO'}")
    met = ratio <= TARGET_READ_RATIO and out["same_facts"] and c.compressed == N and r.removed == N
    print(f"target: reading compressed sessions at most {TARGET_READ_RATIO:g}x the raw time: "
          f"{'ok' if met else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
