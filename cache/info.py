"""Summary statistics of a run in the cache: what `dp cache info` prints.

Per run: problems, traces, tokens, bytes per token (the run's measured share of
the `tokens` table, see `token_bytes_by_run`; the file size over all tokens is
`file_bytes_per_token`, the same on every row), mean trace accuracy, majority-vote
accuracy (cons@N; a tie between answers counts as the expected value of a uniformly
random tie-break, `dp.votes.tie_expected_correct`, since a file's order must not
decide it) and the paper's redundancy statistic, the share of
same-problem trace pairs whose answers fall in one equivalence class (pairs
where either trace has no answer count as different). Reads only.
"""

from __future__ import annotations

import os

import numpy as np

from dp.cache.store import Cache, ProblemTraces
from dp.votes import tie_expected_correct


def same_answer_pairs(pt: ProblemTraces) -> tuple[int, int]:
    """(pairs with equivalent answers, all pairs) among one problem's traces."""
    valid = pt.classes[pt.classes >= 0]
    counts = np.bincount(valid) if valid.size else np.zeros(0, dtype=np.int64)
    same = int((counts * (counts - 1) // 2).sum())
    return same, pt.n * (pt.n - 1) // 2


def token_bytes_by_run(cache: Cache) -> dict[str, float]:
    """Bytes of the stored `tokens` table attributed to each run, measured from DuckDB's storage.

    Each column segment's size is its distance to the next segment in the same
    block (or the block's end; spill blocks count whole); a row group's bytes are
    shared among runs by their rows in it. Rows not yet checkpointed (still in the
    write-ahead log) count nothing.
    """
    block = cache.con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
    segs = cache.con.execute(
        "SELECT row_group_id, block_id, block_offset, len(additional_block_ids) FROM pragma_storage_info('tokens') "
        "WHERE persistent AND block_id >= 0 ORDER BY block_id, block_offset").fetchall()
    if not segs:
        return {}
    rg_bytes: dict[int, float] = {}
    for i, (rg, bid, off, extra) in enumerate(segs):
        nxt = segs[i + 1][2] if i + 1 < len(segs) and segs[i + 1][1] == bid else block
        rg_bytes[rg] = rg_bytes.get(rg, 0.0) + (nxt - off) + extra * block
    rg_size = cache.con.execute("SELECT max(count) FROM pragma_storage_info('tokens') WHERE segment_type != 'VALIDITY' "
                                "AND start = 0").fetchall()[0][0] or 122880
    rows = cache.con.execute(
        "SELECT (k.rowid // ?)::BIGINT AS rg, t.run, count(*) FROM tokens k JOIN traces t USING (trace_id) "
        "GROUP BY ALL ORDER BY ALL", [int(rg_size)]).fetchall()
    per_rg: dict[int, int] = {}
    for rg, _run, c in rows:
        per_rg[rg] = per_rg.get(rg, 0) + c
    out: dict[str, float] = {}
    for rg, run, c in rows:
        out[run] = out.get(run, 0.0) + rg_bytes.get(rg, 0.0) * c / per_rg[rg]
    return out


def run_stats(cache: Cache, run: str, token_bytes: dict[str, float] | None = None) -> dict:
    """The `dp cache info` record of one run (`token_bytes`: `token_bytes_by_run`, computed once)."""
    problems = cache.load_run(run)
    total_tokens_file = cache.con.execute("SELECT coalesce(sum(n_tokens), 0) FROM traces").fetchall()[0][0]
    size = os.path.getsize(cache.path) if os.path.exists(cache.path) else 0
    token_bytes = token_bytes_by_run(cache) if token_bytes is None else token_bytes
    n_traces = sum(p.n for p in problems)
    tokens = int(sum(int(p.lengths.sum()) for p in problems))
    graded = [p for p in problems if p.problem.gold is not None]
    trace_acc = (sum(int(p.correct.sum()) for p in graded) / sum(p.n for p in graded)) if graded else None
    maj = [float(tie_expected_correct(p.classes, p.correct_classes)[0]) for p in graded]
    pairs = np.array([same_answer_pairs(p) for p in problems], dtype=np.int64).reshape(-1, 2)
    info = cache.run_info(run)
    return {
        "run": run,
        "model": info["model"],
        "source": info["source"],
        "tokenizer": info["tokenizer"],
        "problems": len(problems),
        "traces": n_traces,
        "tokens": tokens,
        "bytes_per_token": round(token_bytes[run] / tokens, 4) if tokens and run in token_bytes else None,
        "file_bytes_per_token": (size / total_tokens_file) if total_tokens_file else None,
        "trace_accuracy": trace_acc,
        "majority_accuracy": (sum(maj) / len(maj)) if maj else None,
        "same_answer_pair_rate": (pairs[:, 0].sum() / pairs[:, 1].sum()) if pairs[:, 1].sum() else None,
        "has_logprobs": cache.con.execute(
            "SELECT count(*) > 0 FROM tokens JOIN traces USING (trace_id) "
            "WHERE run = ? AND confidence IS NOT NULL LIMIT 1", [run]).fetchall()[0][0],
    }
