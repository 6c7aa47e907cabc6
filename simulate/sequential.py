"""Sampling-until-agreement baselines: traces are generated one window at a time in
arrival order and sampling stops once the answers agree. Every sampled trace runs
to the end; unsampled ones cost nothing.

- `esc` (Li et al. 2024): windows of `window` traces; stop after the first window
  whose answers are all equal (a window with a missing answer never agrees).
- `adaptive` (Aggarwal et al. 2023): after each trace, stop when the Beta
  criterion P(p_top > p_second | counts) = 1 - I_0.5(v1 + 1, v2 + 1) >= `confidence`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from dp.errors import DPError
from dp.simulate.policy import Plan


def _plan_from_counts(ctx, orders: np.ndarray, sampled_n: np.ndarray) -> Plan:
    R, N = orders.shape
    in_order = np.arange(N)[None, :] < sampled_n[:, None]  # (R, N) by arrival rank
    sampled = np.zeros((R, N), dtype=bool)
    np.put_along_axis(sampled, orders, in_order, axis=1)
    return Plan(stop_at=np.where(sampled, ctx.lengths[None, :], 0), voters=sampled,
                judge_pairs=np.zeros(R, dtype=np.int64))


@dataclass(frozen=True)
class ESCParams:
    window: int = 5

    def __post_init__(self):
        if self.window < 1:
            raise DPError(f"window must be >= 1, got {self.window}")


class ESC:
    name = "esc"
    needs_judge = False
    needs_confidence = False

    def __init__(self, params: ESCParams | None = None, **kw):
        self.params = params or ESCParams(**kw)

    def plan(self, ctx, orders, rng) -> Plan:
        w = self.params.window
        R, N = orders.shape
        n_win = -(-N // w)
        cls = np.full((R, n_win * w), -1, dtype=np.int64)
        cls[:, :N] = ctx.classes[orders]
        win = cls.reshape(R, n_win, w)
        width = np.minimum(w, N - np.arange(n_win) * w)  # traces in each window (last may be short)
        same = (win == win[:, :, :1]) | (np.arange(w)[None, None, :] >= width[None, :, None])
        agree = same.all(axis=2) & (win[:, :, 0] >= 0)
        first = np.where(agree.any(axis=1), agree.argmax(axis=1), n_win - 1)
        return _plan_from_counts(ctx, orders, np.minimum((first + 1) * w, N))


@dataclass(frozen=True)
class AdaptiveParams:
    confidence: float = 0.95

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise DPError(f"confidence must be in (0, 1), got {self.confidence}")


def beta_stop_probability(v1: np.ndarray, v2: np.ndarray) -> np.ndarray:
    """P(p1 > p2) for the two leading counts under a uniform prior: 1 - I_0.5(v1+1, v2+1)."""
    return betainc(v2 + 1.0, v1 + 1.0, 0.5)  # = 1 - I_0.5(v1 + 1, v2 + 1) by symmetry


class Adaptive:
    name = "adaptive"
    needs_judge = False
    needs_confidence = False

    def __init__(self, params: AdaptiveParams | None = None, **kw):
        self.params = params or AdaptiveParams(**kw)

    def plan(self, ctx, orders, rng) -> Plan:
        R, N = orders.shape
        n_cls = int(ctx.classes.max()) + 1 if ctx.classes.size else 0
        counts = np.zeros((R, max(n_cls, 2)))
        sampled_n = np.full(R, N, dtype=np.int64)
        active = np.ones(R, dtype=bool)
        rows = np.arange(R)
        for k in range(N):
            c = ctx.classes[orders[:, k]]
            ok = active & (c >= 0)
            counts[rows[ok], c[ok]] += 1
            top2 = -np.partition(-counts, 1, axis=1)[:, :2]
            done = active & (beta_stop_probability(top2[:, 0], top2[:, 1]) >= self.params.confidence)
            sampled_n[done] = k + 1
            active &= ~done
            if not active.any():
                break
        return _plan_from_counts(ctx, orders, sampled_n)
