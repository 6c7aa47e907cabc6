"""The interface every pruning policy implements, and the one token-accounting rule.

A policy is online: `begin` a problem for R independent replays (R arrival
orders, or R = 1 in the live runner), then `on_prefix(state, traces)` each time
one trace per replay reaches its decision point, then `finish(state)` says which
traces run to the end. `plan` drives that over given arrival orders and returns
a `Plan`: tokens each trace costs, which traces vote and with what weight. The
replay driver and the live runner call the same methods; only where the tokens
come from differs. Policies that are not prefix-based have online interfaces of
their own, also shared by replay and live: DeepConf (`threshold`, `Monitor`),
ESC and Adaptive (`begin`, `feed` one wave), Slim-SC (`begin`, `decide`).

Token accounting (`charge`), defined once:
- `paper`: every started trace pays its prefix up to its decision point; traces
  allowed to finish pay their full length (DeepPrune's definition).
- `concurrent`: traces keep decoding until the clustering has seen every trace,
  as a real batch at equal speed would: an unfinished trace pays
  min(length, max decision point over all traces).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class Accounting(StrEnum):
    PAPER = "paper"
    CONCURRENT = "concurrent"


@dataclass
class Plan:
    """What a policy did on one problem in R replays."""

    stop_at: np.ndarray  # (R, N) int64 tokens each trace generated (0 = never started)
    voters: np.ndarray  # (R, N) bool traces whose final answers vote
    weights: np.ndarray | None = None  # (R, N) float vote weights, None = one vote each
    judge_pairs: np.ndarray | None = None  # (R,) judge evaluations asked for


def charge(lengths: np.ndarray, decision: np.ndarray, finished: np.ndarray,
           mode: Accounting = Accounting.PAPER, started: np.ndarray | None = None) -> np.ndarray:
    """(R, N) tokens per trace: prefixes for all started traces, full length for finished ones.

    lengths, decision: (N,) tokens; finished, started: (R, N) bool (started defaults to all).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    decision = np.minimum(np.asarray(decision, dtype=np.int64), lengths)
    if Accounting(mode) == Accounting.CONCURRENT:
        horizon = int(decision.max()) if decision.size else 0
        partial = np.minimum(lengths, horizon)
    else:
        partial = decision
    cost = np.where(finished, lengths[None, :], partial[None, :])
    if started is not None:
        cost = np.where(started, cost, 0)
    return cost


class PrefixPolicy:
    """Base for policies that decide at decision points, then finish some traces.

    Subclasses implement `begin`, `on_prefix`, `finish` (and `pairs` if they use a judge).
    """

    name = "prefix-policy"
    needs_judge = False
    needs_confidence = False
    accounting = Accounting.PAPER

    def begin(self, ctx, replicas: int, rng: np.random.Generator):
        raise NotImplementedError

    def on_prefix(self, state, traces: np.ndarray) -> None:
        """traces: (R,) position of the trace that reached its decision point in each replay."""

    def finish(self, state) -> np.ndarray:
        """(R, N) bool: the traces that run to the end and vote."""
        raise NotImplementedError

    def weights(self, state) -> np.ndarray | None:
        return None

    def pairs(self, state) -> np.ndarray | None:
        return None

    def plan(self, ctx, orders: np.ndarray, rng: np.random.Generator) -> Plan:
        """Feed the traces to the policy in each replay's arrival order; charge the result."""
        state = self.begin(ctx, orders.shape[0], rng)
        for k in range(orders.shape[1]):
            self.on_prefix(state, orders[:, k])
        finished = self.finish(state)
        return Plan(
            stop_at=charge(ctx.lengths, ctx.decision, finished, self.accounting),
            voters=finished, weights=self.weights(state), judge_pairs=self.pairs(state),
        )
