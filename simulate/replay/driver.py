"""Replay policies over many arrival orders on cached traces and summarise them.

Per problem, R arrival orders are drawn from a seeded generator (the same orders
for every policy: common random numbers), or one order by decision point
(`prefix-length`, what equal-speed parallel decoding gives), or the order recorded
live (`live`: runs of `dp live` and `dp serve`). Each policy returns
a Plan; this module turns plans into tokens, accuracy and pass rate, each with
its mean and spread over orders, and pairs DeepPrune with its matched random
controls (`dp.simulate.replay.matched`) on the same orders. Votes break ties by arrival
(`dp.votes.majority_rows`), never by file order. It never generates and never writes traces.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError
from dp.seeds import rng as make_rng
from dp.simulate.policies.base import PrefixPolicy
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.replay.context import ProblemContext
from dp.simulate.replay.matched import CONTROLS, controls
from dp.simulate.replay.scores import PairScores
from dp.simulate.replay.tau_sweep import plan_taus
from dp.votes import arrival_ranks, majority_rows

ORDER_KINDS = ("random", "prefix-length", "live")


def make_orders(ctx: ProblemContext, count: int, kind: str, seed: int) -> np.ndarray:
    """(R, N) arrival orders of the problem's traces (positions 0..N-1)."""
    if kind == "prefix-length":
        return np.argsort(ctx.decision, kind="stable")[None, :]
    if kind == "live":
        if ctx.live_order is None:
            raise DPError(f"problem {ctx.problem_id} has no recorded live arrival order "
                          "(--order live replays runs of dp live and dp serve)")
        return ctx.live_order[None, :]
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
    prefix_share: float | None = None  # prefix policies: mean decision point / mean trace length
    judge_in_sample: bool | None = None  # judged policies: was the judge trained on these problems
    controls: dict = field(default_factory=dict)  # matched controls and paired differences (flat keys)
    warnings: list[str] = field(default_factory=list)
    per_problem: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("per_problem")
        d.update(d.pop("controls"))
        return d


@dataclass
class _Outcome:
    """One plan scored on one problem, per arrival order."""

    accuracy: np.ndarray  # (R,) bool, the vote's answer is correct
    passed: np.ndarray  # (R,) bool, a correct answer is among the voters
    tokens: np.ndarray  # (R,) int64 tokens generated


def _score(ctx: ProblemContext, plan, ranks: np.ndarray) -> _Outcome:
    stop = np.minimum(plan.stop_at, ctx.lengths[None, :])
    winner = majority_rows(ctx.classes, plan.voters, ranks, plan.weights)
    class_ok = _class_correct(ctx)
    acc = np.where(winner >= 0, class_ok[np.maximum(winner, 0)], False)
    passed = (plan.voters & ctx.correct[None, :]).any(axis=1)
    return _Outcome(acc, passed, stop.sum(axis=1))


def replay(policy, contexts: list[ProblemContext], orders: int = 50, order_kind: str = "random",
           seed: int = 0, judge_contexts: list[ProblemContext] | None = None) -> PolicyResult:
    """Replay `policy` on every problem; `judge_contexts` replace `contexts` where the
    policy brings its own judge (the oracle bound).

    `order_kind="prefix-length"` orders traces by decision point for prefix policies
    only; DeepConf's warm-up, ESC and adaptive always sample in random orders.
    Policies with `matched_controls = True` (DeepPrune) are paired with the controls of
    `dp.simulate.replay.matched` on the same orders.
    """
    return replay_taus([policy], contexts, orders, order_kind, seed, judge_contexts)[0]


def replay_taus(policies: list, contexts: list[ProblemContext], orders: int = 50, order_kind: str = "random",
                seed: int = 0, judge_contexts: list[ProblemContext] | None = None) -> list[PolicyResult]:
    """`replay` of each of `policies`, DeepPrune objects with one name that differ only in tau,
    sharing one pass per problem (`dp.simulate.replay.tau_sweep`); the results are those of `replay`."""
    first = policies[0]
    if len(policies) > 1 and not all(_same_but_tau(first, p) for p in policies):
        raise DPError("replay_taus: the policies must differ only in tau")
    ctxs = judge_contexts or contexts
    is_prefix = isinstance(first, PrefixPolicy)
    kind = order_kind if is_prefix else "random"
    paired = bool(getattr(first, "matched_controls", False))
    tallies = [_Tally(paired) for _ in policies]
    for ctx in ctxs:
        if getattr(first, "needs_judge", False) and ctx.scores is None:
            raise DPError(f"policy '{first.name}' needs a judge")
        ords = make_orders(ctx, orders, kind, seed)
        ranks = arrival_ranks(ords)
        if len(policies) == 1:
            plans = [first.plan(ctx, ords, make_rng(seed, first.name, ctx.problem_id))]
        else:
            plans = plan_taus(first, ctx, ords, lambda c=ctx: make_rng(seed, first.name, c.problem_id),
                              [p.params.tau for p in policies])
        seen: dict[int, dict] = {}  # a plan shared by several taus is scored once
        for tally, plan in zip(tallies, plans, strict=True):
            if id(plan) not in seen:
                seen[id(plan)] = _outcomes(first, ctx, plan, ranks, seed, paired)
            tally.add(ctx, plan, seen[id(plan)])
    prefix_share = None
    if is_prefix and getattr(first, "uses_prefixes", True):
        lengths = sum(int(c.lengths.sum()) for c in ctxs)
        prefix_share = float(sum(int(c.decision.sum()) for c in ctxs) / lengths) if lengths else None
    return [t.result(p, kind, seed, len(ctxs), prefix_share) for t, p in zip(tallies, policies, strict=True)]


def _same_but_tau(a, b) -> bool:
    pa, pb = getattr(a, "params", None), getattr(b, "params", None)
    return (isinstance(a, DeepPrune) and type(a) is type(b) and a.name == b.name
            and dataclasses.replace(pa, tau=0.0) == dataclasses.replace(pb, tau=0.0))


def _outcomes(policy, ctx: ProblemContext, plan, ranks: np.ndarray, seed: int, paired: bool) -> dict:
    """The plan and (if paired) its matched controls scored on one problem."""
    outs = {"policy": _score(ctx, plan, ranks)}
    if paired:
        ctl = controls(ctx.lengths, ctx.decision, plan.voters,
                       make_rng(seed, "matched", policy.name, ctx.problem_id), policy.accounting)
        for name, cplan in ctl.items():
            outs[name] = _score(ctx, cplan, ranks)
    return outs


class _Tally:
    """One policy's outcomes over problems, summed into a PolicyResult at the end."""

    def __init__(self, paired: bool):
        self.paired = paired
        self.outs: dict[str, list[_Outcome]] = {"policy": [], **({c: [] for c in CONTROLS} if paired else {})}
        self.pair_rows: list[np.ndarray] = []
        self.per_problem: list[dict] = []
        self.full = 0

    def add(self, ctx: ProblemContext, plan, outs: dict) -> None:
        out = outs["policy"]
        for name in self.outs:
            self.outs[name].append(outs[name])
        pairs = plan.judge_pairs if plan.judge_pairs is not None else np.zeros(len(out.tokens))
        self.pair_rows.append(pairs)
        self.full += int(ctx.lengths.sum())
        self.per_problem.append({
            "problem_id": ctx.problem_id, "tokens": float(out.tokens.mean()), "full_tokens": int(ctx.lengths.sum()),
            "accuracy": float(out.accuracy.mean()), "pass_rate": float(out.passed.mean()),
            "judge_pairs": float(np.mean(pairs)),
            **({f"{c}_accuracy": float(outs[c].accuracy.mean()) for c in CONTROLS} if self.paired else {}),
        })

    def result(self, policy, kind: str, seed: int, problems: int, prefix_share) -> PolicyResult:
        acc, tok, passed = _totals(self.outs["policy"])
        pairs = np.stack(self.pair_rows, axis=1).sum(axis=1).astype(float)
        full = self.full
        return PolicyResult(
            policy=policy.name, params=dict(getattr(policy, "params_dict", {})),
            tokens=float(tok.mean()), tokens_std=float(tok.std()), full_tokens=float(full),
            token_reduction=float(1.0 - tok.mean() / full) if full else 0.0,
            accuracy=float(acc.mean()), accuracy_std=float(acc.std()),
            pass_rate=float(passed), judge_pairs=float(pairs.mean()),
            orders=int(acc.shape[0]), order_kind=kind, seed=seed, problems=problems,
            prefix_share=prefix_share,
            controls=_paired(self.outs, acc, tok, full) if self.paired else {},
            per_problem=self.per_problem,
        )


def _totals(outs: list[_Outcome]) -> tuple[np.ndarray, np.ndarray, float]:
    """(R,) accuracy over problems, (R,) tokens summed over problems, pass rate over all."""
    acc = np.stack([o.accuracy for o in outs], axis=1).astype(float).mean(axis=1)
    tok = np.stack([o.tokens for o in outs], axis=1).sum(axis=1).astype(float)
    passed = float(np.stack([o.passed for o in outs], axis=1).mean())
    return acc, tok, passed


def _mean_se(x: np.ndarray) -> tuple[float, float | None]:
    """Mean and standard error over orders (None with a single order)."""
    return float(x.mean()), (float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else None)


def _paired(outs: dict, acc: np.ndarray, tok: np.ndarray, full: int) -> dict:
    """The controls' tokens/accuracy and the paired differences policy minus control.

    Keys, for `matched` (count-matched) and `token_matched`: {c}_tokens,
    {c}_token_reduction, {c}_accuracy, {c}_pass_rate, {c}_accuracy_diff (+ _se),
    {c}_tokens_diff (+ _se): differences are the policy minus the control, per order,
    averaged over orders, with their standard error over orders.
    """
    d: dict = {}
    for c in CONTROLS:
        cacc, ctok, cpass = _totals(outs[c])
        da, da_se = _mean_se(acc - cacc)
        dt, dt_se = _mean_se(tok - ctok)
        d.update({
            f"{c}_tokens": float(ctok.mean()),
            f"{c}_token_reduction": float(1.0 - ctok.mean() / full) if full else 0.0,
            f"{c}_accuracy": float(cacc.mean()), f"{c}_pass_rate": cpass,
            f"{c}_accuracy_diff": da, f"{c}_accuracy_diff_se": da_se,
            f"{c}_tokens_diff": dt, f"{c}_tokens_diff_se": dt_se,
        })
    return d


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
