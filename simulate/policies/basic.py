"""The reference and the lower bound: cons@N and random pruning.

- `cons`: every trace runs to the end and votes (cons@N). Token reduction 0 by definition.
- `random`: every trace pays its prefix (like DeepPrune); a fixed `keep` traces
  chosen at random run to the end and vote (keep = 20 by default). This is NOT
  DeepPrune's budget (DeepPrune finishes min(|largest|, K2), K3, or one per
  cluster): the paired, budget-matched controls are `dp.simulate.replay.matched`,
  reported on every DeepPrune row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dp.errors import DPError
from dp.simulate.policies.base import Accounting, PrefixPolicy


class Consensus(PrefixPolicy):
    name = "cons"
    uses_prefixes = False  # every trace runs to the end: no decision point, no prefix_share

    def begin(self, ctx, replicas, rng):
        return (replicas, ctx.n)

    def finish(self, state):
        return np.ones(state, dtype=bool)


@dataclass(frozen=True)
class RandomParams:
    keep: int = 20  # traces finished per problem
    accounting: str = "paper"

    def __post_init__(self):
        if self.keep < 1:
            raise DPError(f"keep must be >= 1, got {self.keep}")
        Accounting(self.accounting)


class RandomPrune(PrefixPolicy):
    name = "random"

    def __init__(self, params: RandomParams | None = None, **kw):
        self.params = params or RandomParams(**kw)
        self.accounting = Accounting(self.params.accounting)

    def begin(self, ctx, replicas, rng):
        return {"rng": rng, "shape": (replicas, ctx.n)}

    def finish(self, state):
        R, N = state["shape"]
        ranked = np.argsort(state["rng"].random((R, N)), axis=1)
        out = np.zeros((R, N), dtype=bool)
        take = min(self.params.keep, N)
        np.put_along_axis(out, ranked[:, :take], True, axis=1)
        return out
