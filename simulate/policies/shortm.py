"""short-m@k (Hassid et al. 2025, "Don't overthink it"; method.md section 4).

All k = N traces start at once; every trace stops once the first m have finished;
the m first finishers vote by majority (ties: the class whose voter finished first).
At equal decoding speed a trace finishes after `length` tokens, so the m shortest
traces finish first and every other trace is charged min(its length, the m-th
finisher's length). Traces of equal length finish together: the arrival order
given to `plan` breaks that tie (live: the order the engine reported them).

One object serves the replay (`plan`, R orders at once) and the live runner
(`dp.simulate.live.shortm`: `finishers` says how many finishers vote and
`stop_at` what the replay charges). It does not read the cache or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dp.errors import DPError
from dp.simulate.policies.base import Plan
from dp.votes import arrival_ranks


@dataclass(frozen=True)
class ShortMParams:
    m: int = 3  # finishers that vote; every other trace stops when the m-th finishes

    def __post_init__(self):
        if int(self.m) < 1:
            raise DPError(f"m must be >= 1, got {self.m}")


class ShortM:
    name = "short-m@k"
    needs_judge = False
    needs_confidence = False

    def __init__(self, params: ShortMParams | None = None, **kw):
        self.params = params or ShortMParams(**kw)

    def finishers(self, n: int) -> int:
        """How many of n traces finish and vote (m, or n when m > n)."""
        return min(int(self.params.m), int(n))

    def plan(self, ctx, orders: np.ndarray, rng=None) -> Plan:
        """orders: (R, N) arrival orders, used only to order traces of equal length."""
        lengths = np.asarray(ctx.lengths, dtype=np.int64)
        R, N = orders.shape
        if N == 0:
            empty = np.zeros((R, 0), dtype=bool)
            return Plan(stop_at=np.zeros((R, 0), np.int64), voters=empty, judge_pairs=np.zeros(R, np.int64))
        by_length = np.argsort(lengths[orders], axis=1, kind="stable")  # stable: ties keep arrival order
        finish_order = np.take_along_axis(orders, by_length, axis=1)  # (R, N) positions by finish
        m = self.finishers(N)
        voters = np.zeros((R, N), dtype=bool)
        np.put_along_axis(voters, finish_order[:, :m], True, axis=1)
        horizon = lengths[finish_order[:, m - 1]]  # (R,) the m-th finisher's length
        stop_at = np.minimum(lengths[None, :], horizon[:, None])
        return Plan(stop_at=stop_at, voters=voters, judge_pairs=np.zeros(R, dtype=np.int64),
                    ranks=arrival_ranks(finish_order))
