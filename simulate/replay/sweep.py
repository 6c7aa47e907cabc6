"""`simulate`: the library call behind `dp simulate`, over one setting or a grid.

Builds the problem contexts once (decision points, prefixes, the judge's lazily
scored matrix shared by every point, so a sweep scores each pair once), replays
each policy at each grid point, and stores every point in the cache's
`sim_points` table with its settings, seed and provenance, where `dp figures`
reads them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
from dataclasses import dataclass

import numpy as np

from dp.cache.store import Cache
from dp.errors import DPError
from dp.judge.base import load_judge
from dp.judge.crossfit import crossfit_judges
from dp.judge.insample import in_sample, message
from dp.judge.truncation import TruncationRule
from dp.provenance import stamp
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.policies.registry import POLICIES, make_policy, setting_names
from dp.simulate.replay.context import build_contexts
from dp.simulate.replay.driver import PolicyResult, replay_taus, with_judge

CROSSFIT_PAIRS = 20  # training pairs per problem for each cross-fitted judge (a seeded sample)
INT_PARAMS = {"K", "K1", "K2", "K3", "keep", "window", "conf_window", "warmup", "wave", "every"}


def parse_sweep(spec: str) -> tuple[str, list]:
    """`tau=0.05:0.95:0.05` (start:stop:step, stop included) or `K2=10,20,40` -> (name, values)."""
    if "=" not in spec:
        raise DPError(f"bad sweep '{spec}': expected NAME=START:STOP:STEP or NAME=V1,V2,...")
    name, values = spec.split("=", 1)
    name = name.strip()
    cast = int if name in INT_PARAMS else float
    try:
        if ":" in values:
            start, stop, step = (float(v) for v in values.split(":"))
            if step <= 0:
                raise ValueError
            vals = np.arange(start, stop + step / 2, step)
            out = [cast(round(v, 10)) for v in vals]
        else:
            out = [cast(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise DPError(f"bad sweep '{spec}': expected NAME=START:STOP:STEP or NAME=V1,V2,...") from None
    if not out:
        raise DPError(f"bad sweep '{spec}': no values")
    return name, out


@dataclass
class SimSettings:
    """Everything `dp simulate` was asked for (stored with each point)."""

    run: str
    policies: tuple[str, ...] = ("deepprune", "cons")
    judge: str = "features"
    truncate: str = "words:25"
    orders: int = 50
    order_kind: str = "random"
    seed: int = 0
    params: dict | None = None  # tau, K, K1, K2, K3, final, when_full, accounting, keep, ...
    sweep: tuple[str, ...] = ()
    limit: int | None = None
    crossfit: int | None = None  # K: judges trained on folds of the run's problems (trainable types)


def _validate(s: SimSettings, grid_axes: list[tuple[str, list]]) -> None:
    """Unknown policies, settings, sweep axes and limits are one-line errors, before any work."""
    for name in s.policies:
        if name not in POLICIES:
            raise DPError(f"unknown policy '{name}'; known: {', '.join(sorted(POLICIES))}")
    known = setting_names()
    chosen = setting_names(s.policies)
    for key in s.params or {}:
        if key not in known:
            raise DPError(f"unknown setting '{key}'; known: {', '.join(sorted(known))}")
    for name, _ in grid_axes:
        if name not in chosen:
            raise DPError(f"cannot sweep '{name}': not a setting of {', '.join(s.policies)} "
                          f"(their settings: {', '.join(sorted(chosen)) or 'none'})")
    if s.limit is not None and s.limit < 1:
        raise DPError(f"limit must be >= 1, got {s.limit}")
    if s.orders < 1:
        raise DPError(f"orders must be >= 1, got {s.orders}")


_MEMO: dict | None = None  # contexts shared by the `simulate` calls inside `reuse_contexts()`
ANY_PREFIXES = "any judge"  # a call that needs prefixes but no judge of its own (oracle overrides)


@contextlib.contextmanager
def reuse_contexts():
    """Inside this block, `simulate` calls on the same cache, run, rule and limit share one set of
    problem contexts (decision points, prefixes, judge scores, confidences) where the judge and
    the confidences they need agree, instead of reading them again. For callers that make
    several calls in a row (`dp figures`); the traces must not change inside the block."""
    global _MEMO
    outer, _MEMO = _MEMO, ({} if _MEMO is None else _MEMO)
    try:
        yield
    finally:
        _MEMO = outer


def _reused(cache: Cache, s: SimSettings, rule, judge_key, needs_conf: bool):
    """Contexts an earlier call in `reuse_contexts()` built that serve this call, else None."""
    if _MEMO is None:
        return None
    hit = _MEMO.get((str(cache.path), s.run, str(rule), s.limit))
    if hit is None:
        return None
    contexts, key, conf = hit
    fits = judge_key is None or key == judge_key or (judge_key == ANY_PREFIXES and key is not None)
    return contexts if fits and (conf or not needs_conf) else None


def simulate(cache: Cache, s: SimSettings, store: bool = True) -> list[PolicyResult]:
    """Replay every policy (at every grid point) on run `s.run`; store the points if asked."""
    cache.run_info(s.run)  # an unknown run fails first, with the runs that exist
    grid_axes = [parse_sweep(x) for x in s.sweep]
    _validate(s, grid_axes)
    rule = TruncationRule.parse(s.truncate)
    base = dict(s.params or {})
    probes = [make_policy(n, **base) for n in s.policies]  # validates settings before any work
    needs_judge = any(p.needs_judge and p.judge_override is None for p in probes)
    needs_conf = any(getattr(p, "needs_confidence", False) for p in probes)
    judge, judge_info = None, {}
    if needs_judge and s.crossfit:
        judge = crossfit_judges(cache, s.run, s.judge, rule, s.crossfit, s.seed, max_pairs=CROSSFIT_PAIRS)
        judge_info = {"judge": judge.name, "judge_in_sample": False, **judge.describe()}
    elif needs_judge:
        judge = load_judge(s.judge, seed=s.seed)
        questions = [p.question for p in cache.problems(s.run)]
        judge_info = {"judge": judge.name, "judge_in_sample": in_sample(judge, s.run, questions)}
    any_judge = judge or (load_judge("oracle") if any(p.judge_override for p in probes) else None)
    if judge is not None:
        judge_key = ("crossfit", s.judge, s.crossfit, s.seed) if s.crossfit else judge.name
    else:  # only judge overrides (the oracle): any contexts with prefixes serve
        judge_key = None if any_judge is None else ANY_PREFIXES
    contexts = _reused(cache, s, rule, judge_key, needs_conf)
    if contexts is None:
        contexts = build_contexts(cache, s.run, rule, any_judge, confidence=needs_conf, limit=s.limit)
        if _MEMO is not None:
            key = (str(cache.path), s.run, str(rule), s.limit)
            old = _MEMO.get(key)
            if judge_key in (None, ANY_PREFIXES) and old is not None and old[1] is not None:  # keep its scores
                contexts = [dataclasses.replace(c, scores=o.scores) for c, o in zip(contexts, old[0], strict=True)]
                judge_key = old[1]
            _MEMO[key] = (contexts, any_judge.name if judge_key == ANY_PREFIXES else judge_key, needs_conf)
    overrides = {}
    for p in probes:
        if p.judge_override and p.judge_override not in overrides:
            overrides[p.judge_override] = with_judge(contexts, load_judge(p.judge_override, seed=s.seed), rule, cache)
    for ctxs in (contexts, *overrides.values()):
        for c in ctxs:  # cheap judges score the whole matrix in one call (dp.simulate.replay.scores)
            if c.scores is not None and hasattr(c.scores.judge, "score_matrix"):
                c.scores.fill_all()
    accounting = base.get("accounting", "paper")
    names = [n for n, _ in grid_axes]
    jobs = []  # (policy) in the order points are reported
    for values in itertools.product(*[v for _, v in grid_axes]) if grid_axes else [()]:
        point = {**base, **dict(zip(names, values, strict=True))}
        for name in s.policies:
            policy = make_policy(name, **point)
            if grid_axes and values and not _uses_any(policy, names) and any(j.name == name for j in jobs):
                continue  # a policy the swept parameter does not touch runs once
            jobs.append(policy)
    results: list[PolicyResult | None] = [None] * len(jobs)
    for group in _tau_groups(jobs):  # DeepPrune points differing only in tau share one pass
        policies = [jobs[i] for i in group]
        first = policies[0]
        out = replay_taus(policies, contexts, orders=s.orders, order_kind=s.order_kind, seed=s.seed,
                          judge_contexts=overrides.get(first.judge_override))
        for i, res, policy in zip(group, out, policies, strict=True):
            res.params.setdefault("accounting", accounting)
            if policy.needs_judge:
                info = ({"judge": policy.judge_override, "judge_in_sample": False} if policy.judge_override
                        else judge_info)
                res.params.update(truncate=str(rule), judge_arg=policy.judge_override or s.judge, **info)
                res.judge_in_sample = bool(info.get("judge_in_sample"))
            res.warnings += _warnings(res, contexts, rule)
            results[i] = res
    if store and cache.write:
        store_points(cache, s.run, results)
    return results


def _warnings(res: PolicyResult, contexts, rule) -> list[str]:
    """Settings under which a prefix policy cannot prune, and in-sample judges, in words."""
    out = []
    if res.prefix_share is not None and res.prefix_share > 0.5:
        out.append(f"{res.policy}: the prefix rule {rule} covers {100 * res.prefix_share:.0f}% of the mean "
                   f"trace (prefix_share {res.prefix_share:.2f}): little is left to prune; use a shorter rule")
    K2 = res.params.get("K2")
    if K2 is not None and res.params.get("final") == "largest":
        small = sum(c.n <= K2 for c in contexts)
        if small:
            out.append(f"{res.policy}: N <= K2 = {K2} on {small} of {len(contexts)} problems: the largest "
                       f"cluster finishes whole, only other clusters are pruned")
    if res.params.get("judge_in_sample"):
        out.append(f"{res.policy}: {message(str(res.params.get('judge')), 'this run')}")
    return out


def _tau_groups(jobs: list) -> list[list[int]]:
    """Indices of jobs grouped so each group is one `replay_taus` call (singletons otherwise)."""
    groups: dict = {}
    for i, p in enumerate(jobs):
        key = (p.name, dataclasses.replace(p.params, tau=0.0)) if isinstance(p, DeepPrune) else ("", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _uses_any(policy, names) -> bool:
    return any(n in getattr(policy, "params_dict", {}) for n in names)


def store_points(cache: Cache, run: str, results: list[PolicyResult]) -> None:
    """Append one `sim_points` row per result, in one transaction."""
    st = stamp()
    with cache.transaction():
        start = cache.con.execute("SELECT coalesce(max(point_id), 0) + 1 FROM sim_points").fetchall()[0][0]
        rows = [
            (start + i, run, r.policy, json.dumps(r.params, sort_keys=True),
             r.params.get("accounting", "paper"), r.orders, r.seed, r.tokens, r.tokens_std,
             r.full_tokens, r.token_reduction, r.accuracy, r.accuracy_std, r.pass_rate,
             r.judge_pairs, json.dumps({**r.summary(), "per_problem": r.per_problem}),
             st["dp_version"], st["git_hash"], st["created_at"])
            for i, r in enumerate(results)
        ]
        cache.con.executemany(
            "INSERT INTO sim_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
