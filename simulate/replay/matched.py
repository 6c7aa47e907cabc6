"""Matched random controls: what pruning without a judge does at DeepPrune's own budget.

For each (problem, arrival order) a control is paired with the DeepPrune replay on
the same order (method.md section 4, "random pruning at the same budget"):

- `count_matched`: finishes exactly as many traces as that replay finished, chosen
  uniformly among all N; every other trace pays the same prefix as under DeepPrune.
- `token_matched`: takes the traces in a uniformly random order and finishes the
  first m of them, m chosen so that their extra tokens (full length minus what the
  trace already paid) come closest to the extra tokens of the DeepPrune replay
  (the longest run within the budget, or that run plus the next trace when that
  lands nearer; ties: within the budget).

Both vote unweighted, with the same tie rule (`dp.votes.majority_rows`) and the
same accounting (`dp.simulate.policies.base.charge`). DeepPrune minus its control on the
same orders is the judge's own contribution; the paired differences are reported by
`dp.simulate.replay`. Nothing here reads the cache or a judge.
"""

from __future__ import annotations

import numpy as np

from dp.simulate.policies.base import Accounting, Plan, charge

CONTROLS = ("matched", "token_matched")


def count_matched(lengths: np.ndarray, decision: np.ndarray, finished: np.ndarray, rng: np.random.Generator,
                  accounting: Accounting = Accounting.PAPER) -> Plan:
    """finished: (R, N) bool of the replay being matched -> the control's Plan."""
    R, N = finished.shape
    k = finished.sum(axis=1)  # (R,) traces the replay finished
    ranked = np.argsort(rng.random((R, N)), axis=1)
    chosen = np.zeros((R, N), dtype=bool)
    np.put_along_axis(chosen, ranked, np.arange(N)[None, :] < k[:, None], axis=1)
    return Plan(stop_at=charge(lengths, decision, chosen, accounting), voters=chosen)


def token_matched(lengths: np.ndarray, decision: np.ndarray, finished: np.ndarray, rng: np.random.Generator,
                  accounting: Accounting = Accounting.PAPER) -> Plan:
    """finished: (R, N) bool of the replay being matched -> the control's Plan."""
    R, N = finished.shape
    base = charge(lengths, decision, np.zeros((1, N), dtype=bool), accounting)[0]  # (N,) paid when not finished
    extra = np.asarray(lengths, dtype=np.int64) - base  # (N,) further tokens to finish each trace
    budget = (finished * extra[None, :]).sum(axis=1)  # (R,)
    ranked = np.argsort(rng.random((R, N)), axis=1)
    spent = np.cumsum(extra[ranked], axis=1)  # (R, N) in random order
    under = (spent <= budget[:, None]).sum(axis=1)  # (R,) longest run within the budget
    below = np.where(under > 0, np.take_along_axis(spent, np.maximum(under - 1, 0)[:, None], 1)[:, 0], 0)
    above = np.take_along_axis(spent, np.minimum(under, N - 1)[:, None], 1)[:, 0]
    over = (under < N) & (above - budget < budget - below)  # one more trace lands nearer
    take = np.arange(N)[None, :] < (under + over)[:, None]
    chosen = np.zeros((R, N), dtype=bool)
    np.put_along_axis(chosen, ranked, take, axis=1)
    return Plan(stop_at=charge(lengths, decision, chosen, accounting), voters=chosen)


def controls(lengths, decision, finished, rng, accounting) -> dict[str, Plan]:
    """Both controls of one replay, drawn from `rng` in a fixed order."""
    return {"matched": count_matched(lengths, decision, finished, rng, accounting),
            "token_matched": token_matched(lengths, decision, finished, rng, accounting)}
