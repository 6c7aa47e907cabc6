"""The judge-score cache: J(a, b) per (judge, truncation rule, trace pair), stored once.

A mixin of `Cache` (`cache.get_scores`, `cache.put_scores`): pairs are order-insensitive, a
missing score is NaN, never 0. Which judge scores what is `dp.judge.scoring`'s business.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class JudgeScores:
    """Methods of `Cache` over the `judge_scores` table."""

    def get_scores(self, judge: str, rule: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cached judge scores for pairs (a[i], b[i]) (order-insensitive); NaN where not cached."""
        lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        if lo.size == 0:
            return np.zeros(0)
        self.insert_arrow("_pairs", pa.table({
            "i": pa.array(np.arange(lo.size), pa.int64()), "a": lo, "b": hi}), create=True, temp=True)
        rows = self.con.execute(
            "SELECT p.i, s.score FROM _pairs p JOIN judge_scores s "
            "ON s.trace_a = p.a AND s.trace_b = p.b WHERE s.judge = ? AND s.rule = ?", [judge, rule],
        ).fetchnumpy()
        self.con.execute("DROP TABLE _pairs")
        out = np.full(lo.size, np.nan)
        out[rows["i"].astype(np.int64)] = rows["score"]
        return out

    def put_scores(self, judge: str, rule: str, a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> None:
        self.need_write()
        lo, hi = np.minimum(a, b).astype(np.int32), np.maximum(a, b).astype(np.int32)
        tbl = pa.table({"judge": pa.array([judge] * lo.size), "rule": pa.array([rule] * lo.size),
                        "a": lo, "b": hi, "s": np.asarray(scores, dtype=np.float64)})
        with self.transaction():
            self.insert_arrow("judge_scores", tbl, or_ignore=True)

