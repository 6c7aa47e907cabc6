"""Import speed and peak memory of `dp import --format table` at growing sizes.

Builds, per size, a Parquet table of P problems x N traces of about T tokens each
whose texts are real reasoning: Qwen2.5-Math responses from ../shared/data/traces,
drawn with a seeded generator and concatenated to length (the last one's \\boxed
answer ends the text). Then runs `dp import` on it in a child process and reads the
child's peak RSS from os.wait4, its tokens/s from `--json`, and the cache's bytes
per token from the file size. Memory should stay flat as the size grows.
Run by hand, under the heavy lock (it tokenizes for minutes):

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_import.py --problems 8 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces" / "qwen25math_math_cot_100.jsonl"
CHARS_PER_TOKEN = 2.7  # SmolLM2 tokenizer on these responses: 930,776 chars / 343,204 tokens


def build_table(path: Path, problems: int, traces: int, tokens: int, seed: int) -> int:
    """Write the table; returns its bytes. Rows are written one problem at a time."""
    rows = [json.loads(line) for line in open(DATA, encoding="utf-8")]
    pool = [r for row in rows for r in row["response"]]
    rng = np.random.default_rng(seed)
    target = int(tokens * CHARS_PER_TOKEN)
    schema = pa.schema([("problem_id", pa.string()), ("question", pa.string()), ("gold", pa.string()),
                        ("index", pa.int32()), ("text", pa.string())])
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for p in range(problems):
            src = rows[p % len(rows)]
            texts = []
            for _ in range(traces):
                parts, size = [], 0
                while size < target:
                    parts.append(pool[int(rng.integers(len(pool)))])
                    size += len(parts[-1]) + 2
                parts[-1] = src["response"][int(rng.integers(len(src["response"])))]
                texts.append("\n\n".join(parts)[-target:])
            w.write_table(pa.table({
                "problem_id": [f"p{p:04d}"] * traces, "question": [src["question"]] * traces,
                "gold": [str(src["gt"])] * traces, "index": pa.array(range(traces), pa.int32()),
                "text": texts}, schema=schema))
    return path.stat().st_size


def run_import(table: Path, cache: Path) -> tuple[dict, float, int]:
    """(`dp import --json` output, wall seconds, peak RSS bytes of the child)."""
    dp = str(Path(sys.executable).parent / "dp")
    cmd = [dp, "import", str(table), "--format", "table", "--run", "bench", "--cache", str(cache), "--json"]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE,
                                env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode()
    if status != 0:
        raise SystemExit(f"dp import failed: {proc.stderr.read().decode()}")
    return json.loads(text), wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--traces", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=8000, help="approximate tokens per trace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args()
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
             f"traces/problem {args.traces}, ~{args.tokens} tokens/trace, seed {args.seed}"]
    with tempfile.TemporaryDirectory() as d:
        for p in args.problems:
            table, cache = Path(d) / f"t{p}.parquet", Path(d) / f"c{p}.duckdb"
            size = build_table(table, p, args.traces, args.tokens, args.seed)
            res, wall, rss = run_import(table, cache)
            tokens = res["tokens"]
            lines.append(
                f"{p} problems x {args.traces}: {res['traces']} traces, {tokens:,} tokens, table {size / 1e6:.0f} MB; "
                f"import {wall:.1f} s wall ({tokens / wall:,.0f} tokens/s incl. start-up; "
                f"{res['tokens_per_s']:,.0f} tokens/s inside), peak RSS {rss / 2**30:.2f} GiB, "
                f"cache {cache.stat().st_size / tokens:.2f} bytes/token")
            print(lines[-1], flush=True)
            table.unlink()
            cache.unlink()
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
