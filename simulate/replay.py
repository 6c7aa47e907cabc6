"""Replay policies over many arrival orders on cached traces and summarise them.

Per problem, R arrival orders are drawn from a seeded generator (the same orders
for every policy: common random numbers), or one order by decision point
(`prefix-length`, what equal-speed parallel decoding gives). Each policy returns
a Plan; this module turns plans into tokens, accuracy and pass rate, each with
its mean and spread over orders. It never generates and never writes traces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from dp.answers import majority_rows
from dp.errors import DPError
from dp.seeds import rng as make_rng
from dp.simulate.context import ProblemContext
from dp.simulate.scores import PairScores

ORDER_KINDS = ("random", "prefix-length")


def make_orders(ctx: ProblemContext, count: int, kind: str, seed: int) -> np.ndarray:
    """(R, N) arrival orders of the problem's traces (positions 0..N-1)."""
    if kind == "prefix-length":
        return np.argsort(ctx.decision, kind="stable")[None, :]
    if kind != "random":
        raise DPError(f"unknown order '{kind}'; known: {', '.join(ORDER_KINDS)}")
    if count < 1:
        raise DPError(f"orders must be >= 1, got {count}")
    g = make_rng(seed, "orders", ctx.problem_id)
    return np.argsort(g.random((count, ctx.n)), axis=1)


@dataclass
class PolicyResult:
    """One policy's replay over a run, with the settings and seed that produced it."""

    policy: str
    params: dict
    tokens: float  # mean over orders of the tokens generated, summed over problems
    tokens_std: float
    full_tokens: float  # cons@N tokens of the same traces
    token_reduction: float  # 1 - tokens / full_tokens
    accuracy: float  # mean over orders of the share of problems answered correctly
    accuracy_std: float
    pass_rate: float  # share of (problem, order) where a correct answer is among the voters
    judge_pairs: float  # mean over orders of judge evaluations, summed over problems
    orders: int
    order_kind: str
    seed: int
    problems: int
    per_problem: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("per_problem")
        return d


def replay(policy, contexts: list[ProblemContext], orders: int = 50, order_kind: str = "random",
           seed: int = 0, judge_contexts: list[ProblemContext] | None = None) -> PolicyResult:
    """Replay `policy` on every problem; `judge_contexts` replace `contexts` where the
    policy brings its own judge (the oracle bound)."""
    ctxs = judge_contexts or contexts
    acc_rows, pass_rows, tok_rows, pair_rows, per_problem = [], [], [], [], []
    full = 0
    for ctx in ctxs:
        if getattr(policy, "needs_judge", False) and ctx.scores is None:
            raise DPError(f"policy '{policy.name}' needs a judge")
        ords = make_orders(ctx, orders, order_kind, seed)
        plan = policy.plan(ctx, ords, make_rng(seed, policy.name, ctx.problem_id))
        stop = np.minimum(plan.stop_at, ctx.lengths[None, :])
        winner = majority_rows(ctx.classes, plan.voters, plan.weights)
        class_ok = _class_correct(ctx)
        acc = np.where(winner >= 0, class_ok[np.maximum(winner, 0)], False)
        passed = (plan.voters & ctx.correct[None, :]).any(axis=1)
        tokens = stop.sum(axis=1)
        pairs = plan.judge_pairs if plan.judge_pairs is not None else np.zeros(len(tokens))
        acc_rows.append(acc)
        pass_rows.append(passed)
        tok_rows.append(tokens)
        pair_rows.append(pairs)
        full += int(ctx.lengths.sum())
        per_problem.append({
            "problem_id": ctx.problem_id, "tokens": float(tokens.mean()), "full_tokens": int(ctx.lengths.sum()),
            "accuracy": float(acc.mean()), "pass_rate": float(passed.mean()),
            "judge_pairs": float(np.mean(pairs)),
        })
    acc = np.stack(acc_rows, axis=1).astype(float)  # (R, P)
    tok = np.stack(tok_rows, axis=1).sum(axis=1).astype(float)  # (R,)
    pairs = np.stack(pair_rows, axis=1).sum(axis=1).astype(float)
    return PolicyResult(
        policy=policy.name, params=dict(getattr(policy, "params_dict", {})),
        tokens=float(tok.mean()), tokens_std=float(tok.std()), full_tokens=float(full),
        token_reduction=float(1.0 - tok.mean() / full) if full else 0.0,
        accuracy=float(acc.mean(axis=1).mean()), accuracy_std=float(acc.mean(axis=1).std()),
        pass_rate=float(np.stack(pass_rows, axis=1).mean()), judge_pairs=float(pairs.mean()),
        orders=int(acc.shape[0]), order_kind=order_kind, seed=seed, problems=len(ctxs),
        per_problem=per_problem,
    )


def _class_correct(ctx: ProblemContext) -> np.ndarray:
    """(C,) bool: is answer class c correct (any of its traces is)."""
    n_cls = int(ctx.classes.max()) + 1 if ctx.classes.size and ctx.classes.max() >= 0 else 1
    ok = np.zeros(n_cls, dtype=bool)
    valid = ctx.classes >= 0
    np.logical_or.at(ok, ctx.classes[valid], ctx.correct[valid])
    return ok


def with_judge(contexts: list[ProblemContext], judge, rule, cache=None) -> list[ProblemContext]:
    """The same contexts scored by another judge (same prefixes and decision points)."""
    out = []
    for c in contexts:
        if c.scores is None:
            raise DPError("contexts were built without prefixes; pass a judge to build_contexts")
        out.append(dataclasses.replace(c, scores=PairScores(judge, rule, c.scores.prefixes, cache), _memo={}))
    return out
