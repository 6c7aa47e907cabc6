"""Bytes per token on disk for the default token columns of a run.

Copies the run's `tokens` rows (trace_id, pos, token_id, logprob, confidence,
end_offset) alone into a fresh DuckDB file, checkpoints it, and divides the file
size by the token count; the traces table (texts) is measured the same way.
Run by hand on a cache with generated traces (they have log-probs):

    .venv/bin/python benchmarks/bench_cache.py --cache dp.duckdb --run default
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import duckdb


def table_bytes(src: str, run: str, what: str) -> tuple[int, int]:
    """(bytes of a fresh file holding only that table's rows of `run`, rows)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "x.duckdb")
        con = duckdb.connect(out)
        con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
        if what == "tokens":
            con.execute("CREATE TABLE tokens AS SELECT k.* FROM src.tokens k JOIN src.traces t USING (trace_id) "
                        "WHERE t.run = ? ORDER BY k.trace_id, k.pos", [run])
            rows = con.execute("SELECT count(*) FROM tokens").fetchall()[0][0]
        else:
            con.execute("CREATE TABLE traces AS SELECT * FROM src.traces WHERE run = ?", [run])
            rows = con.execute("SELECT sum(n_tokens) FROM traces").fetchall()[0][0]
        con.execute("DETACH src")
        con.execute("CHECKPOINT")
        con.close()
        empty = os.path.join(d, "empty.duckdb")
        e = duckdb.connect(empty)
        e.execute("CREATE TABLE x (a INT)")
        e.execute("CHECKPOINT")
        e.close()
        return os.path.getsize(out) - os.path.getsize(empty), int(rows or 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="dp.duckdb")
    ap.add_argument("--run", default="default")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; duckdb {duckdb.__version__}")
    size, tokens = table_bytes(args.cache, args.run, "tokens")
    print(f"tokens table, run '{args.run}': {tokens} tokens, {size} bytes, {size / max(tokens, 1):.2f} bytes/token "
          "(target <= 10)")
    size, tokens = table_bytes(args.cache, args.run, "traces")
    print(f"traces table (texts, answers): {size} bytes, {size / max(tokens, 1):.2f} bytes/token")


if __name__ == "__main__":
    main()
