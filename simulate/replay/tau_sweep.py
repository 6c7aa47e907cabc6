"""One DeepPrune pass for many thresholds: a tau sweep's plans, exactly as one replay per tau.

The taus run as one batch of T x R rows: block b replays at taus[b] with its own
generator, seeded as that tau's own replay would be, and rows never interact, so
every plan equals what `DeepPrune.plan` gives for that tau alone. Decisions depend
on tau only through `best similarity > tau`; when the judge's scores take at most two
values (the oracle's 0/1), a probe replay at one tau first records the interval of
taus that would have decided alike at every step (`ClusterState.bounds`), and each
tau inside it gets the probe's plan: pure clusters make all of [0, 1) one interval,
so the oracle's 19-point sweep costs one replay. Only the taus outside run as a batch
(`tests/test_tau_sweep.py` checks it on a shipped trace file).

Knows nothing about the cache, scoring a plan or storing points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dp.simulate.policies.base import Plan, charge
from dp.simulate.policies.deepprune import DeepPrune


def plan_taus(policy: DeepPrune, ctx, orders: np.ndarray, make_rng: Callable[[], np.random.Generator],
              taus: Sequence[float]) -> list[Plan]:
    """The plan of `policy` at each of `taus` on one problem over the same (R, N) orders.

    `make_rng()` returns a fresh generator seeded as each single replay's (one call per pass block)."""
    taus = [float(t) for t in taus]
    if len(taus) == 1 or not ctx.scores.discrete():
        return _run(policy, ctx, orders, [make_rng() for _ in taus], taus)[0]
    probe = len(taus) // 2
    plans, bounds = _run(policy, ctx, orders, [make_rng()], [taus[probe]], track=True)
    out: list[Plan | None] = [None] * len(taus)
    out[probe] = plans[0]
    rest = [i for i, t in enumerate(taus) if i != probe and not bounds[0] <= t < bounds[1]]
    for i in range(len(taus)):
        if i != probe and i not in rest:
            out[i] = plans[0]  # decides exactly as the probe at every step
    if rest:
        plans, _ = _run(policy, ctx, orders, [make_rng() for _ in rest], [taus[i] for i in rest])
        for i, plan in zip(rest, plans, strict=True):
            out[i] = plan
    return out


def _run(policy: DeepPrune, ctx, orders: np.ndarray, rngs: list, taus: list[float],
         track: bool = False) -> tuple[list[Plan], list]:
    """One pass of len(taus) blocks of R rows; the plans per block and (`track`) the tau interval."""
    R, N = orders.shape
    T = len(taus)
    state = policy.begin_many(ctx, R, rngs, taus)
    state.track = track
    arrivals = np.ascontiguousarray(np.tile(orders, (T, 1)).T)  # (N, T*R): step k's trace of each row
    for k in range(N):
        policy.on_prefix(state, arrivals[k])
    finished = policy.finish(state)  # (T*R, N)
    weights = policy.weights(state)
    pairs = policy.pairs(state)
    stop = charge(ctx.lengths, ctx.decision, finished, policy.accounting)
    plans = [Plan(stop_at=stop[b * R:(b + 1) * R], voters=finished[b * R:(b + 1) * R],
                  weights=None if weights is None else weights[b * R:(b + 1) * R],
                  judge_pairs=pairs[b * R:(b + 1) * R]) for b in range(T)]
    return plans, state.bounds
