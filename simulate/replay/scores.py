"""PairScores: a problem's judge scores as a lazily filled (N, N) matrix.

A policy asks for J(t, h) of many pairs at once; the pairs never asked for are
never scored. Missing entries are computed in one batch through
`dp.judge.scoring.score_pairs`, which also reads and writes the judge-score cache,
so a threshold sweep scores each pair at most once. Counts how many distinct
pairs were asked for (the judge cost a policy incurs) separately from how many
were computed (what this process paid).

Judges with a `score_matrix(prefixes)` method (the cheap ones: oracle, random,
jaccard) can fill the whole matrix in one vectorised call (`fill_all`), which the
replay does; the live runner, whose prefixes arrive one by one, never does.

`lookup(traces, members)` is the replay's hot path: the scores of each replay's
trace against a block of cluster members, with -1 (an empty reservoir slot)
reading as 0.0 from a zero column kept in front of the matrix.
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
        # (N, N + 1) float64: column 0 is 0.0 (empty slot), column j + 1 is J(., j); NaN = not scored yet
        self._padded = np.full((n, n + 1), np.nan)
        self._padded[:, 0] = 0.0
        self.complete = False  # every pair scored: lookups skip the NaN check
        self._discrete: bool | None = None
        self.computed = 0

    @property
    def n(self) -> int:
        return len(self.prefixes)

    @property
    def matrix(self) -> np.ndarray:
        """(N, N) float64 scores, NaN = not scored yet (a view)."""
        return self._padded[:, 1:]

    @matrix.setter
    def matrix(self, m: np.ndarray) -> None:
        self._padded[:, 1:] = m
        self.complete = not np.isnan(self.matrix).any()

    def get(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Scores of the pairs (a[i], b[i]) (trace positions 0..N-1, any shape)."""
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        vals = self.matrix[a, b]
        todo = np.isnan(vals)
        if todo.any():
            self._score(a[todo], b[todo])
            vals = self.matrix[a, b]
        return vals

    def lookup(self, traces: np.ndarray, members: np.ndarray) -> np.ndarray:
        """(R, k, m) scores of traces[r] against members[r, i, j] (-1 = empty slot, reads 0.0).

        traces: (R,) int64 positions; members: (R, k, m) int64 positions or -1."""
        width = self._padded.shape[1]
        idx = members + (traces * width + 1)[:, None, None]
        flat = self._padded.reshape(-1)
        vals = flat.take(idx)
        if not self.complete:
            todo = np.isnan(vals)
            if todo.any():
                t = np.broadcast_to(traces[:, None, None], members.shape)
                self._score(t[todo], members[todo])
                vals = flat.take(idx)
        return vals

    def _score(self, a: np.ndarray, b: np.ndarray) -> None:
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        pairs = np.unique(np.stack([lo, hi], axis=1), axis=0)
        left = [self.prefixes[i] for i in pairs[:, 0]]
        right = [self.prefixes[j] for j in pairs[:, 1]]
        stats: dict = {}
        s = score_pairs(self.judge, self.rule, left, right, cache=self.cache, stats=stats)
        self.computed += stats.get("computed", 0)
        m = self.matrix
        m[pairs[:, 0], pairs[:, 1]] = s
        m[pairs[:, 1], pairs[:, 0]] = s

    def discrete(self) -> bool:
        """Every pair scored, with at most two distinct scores (the oracle's 0 and 1): a tau
        sweep then often decides alike over whole intervals of tau (`dp.simulate.replay.tau_sweep`)."""
        if not self.complete:
            return False
        if self._discrete is None:  # once complete, the matrix no longer changes
            self._discrete = bool(np.unique(self.matrix[~np.eye(self.n, dtype=bool)]).size <= 2)
        return self._discrete

    def fill_all(self) -> None:
        """Score every pair now: in one call for judges with `score_matrix`, else pair by pair."""
        if self.complete:
            return
        if hasattr(self.judge, "score_matrix"):
            todo = np.isnan(self.matrix)
            full = np.asarray(self.judge.score_matrix(self.prefixes), dtype=np.float64)
            self.matrix[todo] = full[todo]
            self.computed += int(np.triu(todo, k=1).sum())
        else:
            iu = np.triu_indices(self.n, k=1)
            if iu[0].size:
                self.get(iu[0], iu[1])
        self.complete = True  # every pair of distinct traces (a trace is never compared with itself)
