"""Summary statistics of a run in the cache: what `dp cache info` prints.

Per run: problems, traces, tokens, bytes per token (file size over all tokens in
the file), mean trace accuracy, majority-vote accuracy (cons@N; a tie between answers
counts as the expected value of a uniformly random tie-break,
`dp.answers.tie_expected_correct`, since a file's order must not decide it) and the paper's redundancy statistic, the share of
same-problem trace pairs whose answers fall in one equivalence class (pairs
where either trace has no answer count as different). Reads only.
"""

from __future__ import annotations

import os

import numpy as np

from dp.answers import tie_expected_correct
from dp.cache.store import Cache, ProblemTraces


def same_answer_pairs(pt: ProblemTraces) -> tuple[int, int]:
    """(pairs with equivalent answers, all pairs) among one problem's traces."""
    valid = pt.classes[pt.classes >= 0]
    counts = np.bincount(valid) if valid.size else np.zeros(0, dtype=np.int64)
    same = int((counts * (counts - 1) // 2).sum())
    return same, pt.n * (pt.n - 1) // 2


def run_stats(cache: Cache, run: str) -> dict:
    """The `dp cache info` record of one run."""
    problems = cache.load_run(run)
    total_tokens_file = cache.con.execute("SELECT coalesce(sum(n_tokens), 0) FROM traces").fetchall()[0][0]
    size = os.path.getsize(cache.path) if os.path.exists(cache.path) else 0
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
        "bytes_per_token": (size / total_tokens_file) if total_tokens_file else None,
        "trace_accuracy": trace_acc,
        "majority_accuracy": (sum(maj) / len(maj)) if maj else None,
        "same_answer_pair_rate": (pairs[:, 0].sum() / pairs[:, 1].sum()) if pairs[:, 1].sum() else None,
        "has_logprobs": cache.con.execute(
            "SELECT count(*) > 0 FROM tokens JOIN traces USING (trace_id) "
            "WHERE run = ? AND confidence IS NOT NULL LIMIT 1", [run]).fetchall()[0][0],
    }
