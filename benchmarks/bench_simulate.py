"""Replay speed: a 19-point tau sweep x 50 orders over 30 problems x 512 traces.

SYNTHETIC data (said in the output): answer classes drawn from a skewed
distribution, trace lengths from a log-normal, and judge scores already in the
matrix (a noisy oracle), as they are once the judge-score cache is warm. This
measures the replay itself, not the judge, through the call `dp simulate --sweep tau=...`
makes (`replay_taus`: one shared pass per problem for all taus, matched controls
included). Run by hand:

    .venv/bin/python benchmarks/bench_simulate.py [--problems 30] [--n 512]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from dp.judge.base import Prefix
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.replay.context import ProblemContext
from dp.simulate.replay.driver import replay_taus
from dp.simulate.replay.scores import PairScores


class _Warm:
    """Stands in for a judge whose scores are all cached: never called."""

    name = "synthetic-warm"
    cacheable = False

    def score(self, left, right):  # pragma: no cover - the matrix is full
        raise AssertionError("all scores should be cached")


def synthetic_context(pid: int, n: int, rng: np.random.Generator) -> ProblemContext:
    n_cls = int(rng.integers(2, 12))
    p = rng.dirichlet(np.full(n_cls, 0.3))
    classes = rng.choice(n_cls, size=n, p=p).astype(np.int64)
    lengths = np.clip(rng.lognormal(7.5, 0.6, n), 200, 32768).astype(np.int64)
    decision = np.minimum(lengths, rng.integers(150, 600, n))
    same = classes[:, None] == classes[None, :]
    noise = rng.normal(0, 0.25, (n, n))
    noise = (noise + noise.T) / 2
    matrix = np.clip(np.where(same, 0.75, 0.3) + noise, 0, 1)
    scores = PairScores(_Warm(), "tokens:500", [Prefix(i, "", int(d), -1) for i, d in enumerate(decision)])
    scores.matrix = matrix
    return ProblemContext(problem_id=f"syn-{pid}", trace_ids=np.arange(n), lengths=lengths, classes=classes,
                          correct=classes == 0, decision=decision, scores=scores)


def sweep(contexts, taus, orders) -> float:
    t0 = time.perf_counter()
    policies = [DeepPrune(tau=float(tau)) for tau in taus]
    replay_taus(policies, contexts, orders=orders, seed=0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=30)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--orders", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    taus = np.round(np.arange(0.05, 0.951, 0.05), 2)
    print(f"SYNTHETIC data; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    contexts = [synthetic_context(i, args.n, rng) for i in range(args.problems)]
    secs = sweep(contexts, taus, args.orders)
    decisions = len(taus) * args.orders * args.problems * args.n
    print(f"tau sweep: {len(taus)} taus x {args.orders} orders x {args.problems} problems x {args.n} traces: "
          f"{secs:.1f} s ({decisions / secs:,.0f} trace decisions/s; target < 60 s)")
    print("cost against N (one tau, same orders):")
    for n in (64, 128, 256, 512, 1024):
        ctxs = [synthetic_context(i, n, rng) for i in range(args.problems)]
        s = sweep(ctxs, [0.5], args.orders)
        print(f"  N={n:5d}: {s:6.2f} s, {args.orders * args.problems * n / s:,.0f} decisions/s")


if __name__ == "__main__":
    main()
