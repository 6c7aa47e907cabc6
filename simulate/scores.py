"""PairScores: a problem's judge scores as a lazily filled (N, N) matrix.

A policy asks for J(t, h) of many pairs at once; the pairs never asked for are
never scored. Missing entries are computed in one batch through
`dp.judge.scoring.score_pairs`, which also reads and writes the judge-score cache,
so a threshold sweep scores each pair at most once. Counts how many distinct
pairs were asked for (the judge cost a policy incurs) separately from how many
were computed (what this process paid).
"""

from __future__ import annotations

import numpy as np

from dp.judge.base import Judge, Prefix
from dp.judge.scoring import score_pairs


class PairScores:
    """Lazily scored symmetric matrix of judge scores over one problem's N traces."""

    def __init__(self, judge: Judge, rule, prefixes: list[Prefix], cache=None):
        self.judge = judge
        self.rule = rule
        self.prefixes = prefixes
        self.cache = cache
        n = len(prefixes)
        self.matrix = np.full((n, n), np.nan)  # (N, N) float64 scores, NaN = not scored yet
        self.computed = 0

    @property
    def n(self) -> int:
        return len(self.prefixes)

    def get(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores of the pairs (a[i], b[i]) (trace positions 0..N-1, any shape)."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        vals = self.matrix[a, b]
        todo = np.isnan(vals)
        if todo.any():
            lo = np.minimum(a[todo], b[todo])
            hi = np.maximum(a[todo], b[todo])
            pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
            left = [self.prefixes[i] for i in pairs[:, 0]]
            right = [self.prefixes[j] for j in pairs[:, 1]]
            stats: dict = {}
            s = score_pairs(self.judge, self.rule, left, right, cache=self.cache, stats=stats)
            self.computed += stats.get("computed", 0)
            self.matrix[pairs[:, 0], pairs[:, 1]] = s
            self.matrix[pairs[:, 1], pairs[:, 0]] = s
            vals = self.matrix[a, b]
        return vals

    def fill_all(self) -> None:
        """Score every pair now (for judges that are cheap, or to warm the cache)."""
        iu = np.triu_indices(self.n, k=1)
        if iu[0].size:
            self.get(iu[0], iu[1])
