"""`dp export`: one run as one flat table, Parquet or JSON lines, for pandas or `datasets`.

Columns (one row per trace, ordered by problem and index): run, model, problem_id,
dataset, question, gold, kind, index, seed, text, answer, correct, n_tokens,
finish_reason, sampling (the run's sampling settings as JSON text), tokenizer.
These are the default column names of `dp import --format table`, so an exported
run reads back to the same run. Rows are streamed from DuckDB in batches and
written to a temporary file renamed into place at the end: a failed export leaves
no partial file. Token-level data (ids, log-probs) are not exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dp.cache.store import Cache
from dp.errors import DPError

FORMATS = ("parquet", "jsonl")
BATCH_ROWS = 2048

_SQL = """
SELECT t.run, r.model, t.problem_id, p.dataset, p.question, p.gold, p.kind,
       t.idx AS "index", t.seed, t.text, t.answer, t.correct, t.n_tokens, t.finish_reason,
       CAST(r.sampling AS VARCHAR) AS sampling, r.tokenizer
FROM traces t
JOIN problems p ON p.run = t.run AND p.problem_id = t.problem_id
JOIN runs r ON r.run = t.run
WHERE t.run = ?
ORDER BY t.problem_id, t.idx
"""


def format_for(out: str | Path, fmt: str | None) -> str:
    """The export format: as given, else from OUT's suffix (.jsonl/.json -> jsonl), else parquet."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DPError(f"unknown export format '{fmt}' (known: {', '.join(FORMATS)})")
        return fmt
    return "jsonl" if Path(out).suffix.lower() in (".jsonl", ".json", ".ndjson") else "parquet"


def run_table(cache: Cache, run: str):
    """`run` as one Arrow table, one row per trace (the columns `dp export` writes)."""
    cache.run_info(run)  # a clear error for an unknown run
    return cache.con.sql(_SQL, params=[run]).to_arrow_table()


def export_run(cache: Cache, run: str, out: str | Path, fmt: str = "parquet") -> dict:
    """Write `run` to `out`; returns {run, out, format, rows, bytes}."""
    cache.run_info(run)  # a clear error for an unknown run
    out = Path(out)
    if out.is_dir():
        raise DPError(f"{out} is a folder; give a file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    reader = cache.con.sql(_SQL, params=[run]).to_arrow_reader(BATCH_ROWS)
    rows = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetWriter(tmp, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for batch in reader:
                    for row in batch.to_pylist():
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    rows += batch.num_rows
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"run": run, "out": str(out), "format": fmt, "rows": rows, "bytes": out.stat().st_size}
