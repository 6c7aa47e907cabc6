"""`simulate`: the library call behind `dp simulate`, over one setting or a grid.

Builds the problem contexts once (decision points, prefixes, the judge's lazily
scored matrix shared by every point, so a sweep scores each pair once), replays
each policy at each grid point, and stores every point in the cache's
`sim_points` table with its settings, seed and provenance, where `dp figures`
reads them.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import numpy as np

from dp.cache.store import Cache
from dp.errors import DPError
from dp.judge.base import load_judge
from dp.judge.truncation import TruncationRule
from dp.provenance import stamp
from dp.simulate.context import build_contexts
from dp.simulate.registry import POLICIES, make_policy
from dp.simulate.replay import PolicyResult, replay, with_judge

INT_PARAMS = {"K", "K1", "K2", "K3", "keep", "window", "conf_window", "warmup"}


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


def simulate(cache: Cache, s: SimSettings, store: bool = True) -> list[PolicyResult]:
    """Replay every policy (at every grid point) on run `s.run`; store the points if asked."""
    cache.run_info(s.run)  # an unknown run fails first, with the runs that exist
    for name in s.policies:
        if name not in POLICIES:
            raise DPError(f"unknown policy '{name}'; known: {', '.join(sorted(POLICIES))}")
    rule = TruncationRule.parse(s.truncate)
    grid_axes = [parse_sweep(x) for x in s.sweep]
    base = dict(s.params or {})
    probes = [make_policy(n, **base) for n in s.policies]  # validates settings before any work
    needs_judge = any(p.needs_judge and p.judge_override is None for p in probes)
    needs_conf = any(getattr(p, "needs_confidence", False) for p in probes)
    judge = load_judge(s.judge, seed=s.seed) if needs_judge else None
    any_judge = judge or (load_judge("oracle") if any(p.judge_override for p in probes) else None)
    contexts = build_contexts(cache, s.run, rule, any_judge, confidence=needs_conf, limit=s.limit)
    overrides = {}
    for p in probes:
        if p.judge_override and p.judge_override not in overrides:
            overrides[p.judge_override] = with_judge(contexts, load_judge(p.judge_override, seed=s.seed), rule, cache)
    results = []
    names = [n for n, _ in grid_axes]
    for values in itertools.product(*[v for _, v in grid_axes]) if grid_axes else [()]:
        point = {**base, **dict(zip(names, values, strict=True))}
        for name in s.policies:
            policy = make_policy(name, **point)
            if grid_axes and values and not _uses_any(policy, names) and _seen(results, name):
                continue  # a policy the swept parameter does not touch runs once
            res = replay(policy, contexts, orders=s.orders, order_kind=s.order_kind, seed=s.seed,
                         judge_contexts=overrides.get(policy.judge_override))
            if policy.needs_judge:
                res.params.update(judge=policy.judge_override or s.judge, truncate=str(rule))
            results.append(res)
    if store and cache.write:
        store_points(cache, s.run, results)
    return results


def _uses_any(policy, names) -> bool:
    return any(n in getattr(policy, "params_dict", {}) for n in names)


def _seen(results, name) -> bool:
    return any(r.policy == name for r in results)


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
