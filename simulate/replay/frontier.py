"""`frontier`: the library call behind `dp frontier`: which pruning method wins on a run, at a budget.

Every policy family (DeepPrune per judge, its oracle bound, confidence-weighted
DeepPrune per judge, DeepConf low/high, ESC, Adaptive, Slim-SC, short-m@k,
random, cons@N) is swept over a default grid that fits the run (`grids`; knobs
capped at N), each point replayed over the same seeded arrival orders by
`dp.simulate.replay.sweep.simulate` inside `reuse_contexts()`, so the run's contexts,
judge scores and cross-fitted judges are built once per run and rule (every pair of
a problem scored in one batch, through the judge-score cache, before the first
replay: a grid asks for most pairs anyway), and every DeepPrune tau grid is one
pass (`dp.simulate.replay.tau_sweep`).

From the points (`dp.simulate.replay.pareto_stats`): the Pareto front of accuracy against
tokens relative to cons@N (in-sample judge points flagged and left off), per family
the best accuracy within each budget with its standard error over problems and
the settings that reach it, and its paired difference against the best random
pruning point within the same budget (per problem, on the same orders).
Families that need log-probs are left out, with a note, on runs that have none.
Nothing is stored in the cache; nothing is printed here.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from dp.cache.store import Cache
from dp.errors import DPError
from dp.judge.truncation import TruncationRule
from dp.simulate.policies.deepprune_conf import run_has_confidence
from dp.simulate.replay.pareto_stats import Point, budget_table, pareto_front
from dp.simulate.replay.sweep import SimSettings, reuse_contexts, simulate

FAMILIES = ("cons", "random", "short-m@k", "deepprune", "deepprune-oracle", "deepprune-conf",
            "deepconf-low", "deepconf-high", "esc", "adaptive", "slimsc")
JUDGED = ("deepprune", "deepprune-conf")  # one family per judge
PREFIXED = ("random", "deepprune", "deepprune-oracle", "deepprune-conf")  # one family per prefix rule
DEFAULT_FAMILIES = tuple(f for f in FAMILIES if f != "slimsc")  # slimsc embeds every segment: opt in
BUDGETS = (0.10, 0.25, 0.50, 0.75)
TAUS = "0.1:0.9:0.1"


@dataclass(frozen=True)
class FrontierSettings:
    runs: tuple[str, ...]
    judges: tuple[str, ...] = ("features",)
    rules: tuple[str, ...] = ("words:25",)  # prefix rules: the prefix families run once per rule
    orders: int = 20
    seed: int = 0
    families: tuple[str, ...] = DEFAULT_FAMILIES
    budgets: tuple[float, ...] = BUDGETS
    crossfit: int | None = None
    limit: int | None = None

    def __post_init__(self):
        if not self.runs:
            raise DPError("dp frontier needs at least one --run")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise DPError(f"unknown family '{bad[0]}'; known: {', '.join(FAMILIES)}")
        if not self.rules:
            raise DPError("dp frontier needs at least one --truncate rule")
        for r in self.rules:
            TruncationRule.parse(r)
        if not self.judges:
            raise DPError("dp frontier needs at least one --judge")
        if self.orders < 1:
            raise DPError(f"orders must be >= 1, got {self.orders}")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise DPError("budgets are shares of cons@N's tokens, in (0, 1]")


def _capped(values, n: int) -> list[int]:
    return sorted({min(int(v), n) for v in values})


def grids(family: str, n: int, max_len: int) -> list[tuple[dict, tuple[str, ...]]]:
    """(fixed settings, sweep axes) calls that cover the family's default grid on N traces."""
    k2 = _capped([1, 2, 3, 5, 8, 12, 20], n)
    if family == "cons":
        return [({}, ())]
    if family == "random":
        return [({}, (f"keep={','.join(map(str, _capped([1, 2, 3, 4, 6, 8, 12, 16, 24, 32], n)))}",))]
    if family == "short-m@k":
        return [({}, (f"m={','.join(map(str, _capped([1, 2, 3, 4, 6, 8, 12, 16], n)))}",))]
    if family in ("deepprune", "deepprune-conf"):  # K3 follows K2: the budget when all are singletons
        return [({"K2": k, "K3": k}, (f"tau={TAUS}",)) for k in k2]
    if family == "deepprune-oracle":
        return [({"K2": k, "K3": k, "tau": 0.5}, ()) for k in k2]
    if family in ("deepconf-low", "deepconf-high"):
        windows = sorted({w for w in (16, 64, 256, 2048) if w < max_len} | {2048})
        warm = _capped([4, 8, 16], max(n - 1, 1))
        return [({"conf_window": w}, (f"warmup={','.join(map(str, warm))}",)) for w in windows]
    if family == "esc":
        return [({}, (f"window={','.join(map(str, _capped([2, 3, 4, 5, 8], n)))}",))]
    if family == "adaptive":
        return [({}, ("confidence=0.8,0.9,0.95,0.99",))]
    if family == "slimsc":
        return [({}, ("similarity=0.9,0.95,0.98",))]
    raise DPError(f"unknown family '{family}'")


def frontier(cache: Cache, s: FrontierSettings, progress=None) -> list[dict]:
    """One result per run: points, front, budget table, notes and timings (see module doc)."""
    out = []
    for run in s.runs:
        points, meta = run_points(cache, s, run, progress)
        out.append(summarize(points, meta, s))
    return out


def run_points(cache: Cache, s: FrontierSettings, run: str, progress=None) -> tuple[list[Point], dict]:
    """Every family's grid replayed on `run`: the points, and what describes the run and the replay."""
    t0 = time.perf_counter()
    info = cache.run_info(run)
    problems = cache.load_run(run)[: s.limit]
    if not problems:
        raise DPError(f"run '{run}' has no traces")
    ns = [p.n for p in problems]
    n, max_len = max(ns), max(int(p.lengths.max(initial=0)) for p in problems)
    conf = run_has_confidence(cache, run)
    notes: list[str] = []
    points: list[Point] = []
    seconds: dict[str, float] = {}  # per family, the first one includes reading the run
    with reuse_contexts():
        for family in s.families:
            if family in ("deepconf-low", "deepconf-high", "deepprune-conf") and not conf:
                notes.append(f"{family}: left out, run '{run}' has no log-probs")
                continue
            for judge, rule in itertools.product(s.judges if family in JUDGED else s.judges[:1],
                                                 s.rules if family in PREFIXED else s.rules[:1]):
                label = _label(family, judge, rule, s)
                t1 = time.perf_counter()
                for fixed, sweep in grids(family, n, max_len):
                    if progress:
                        progress(f"{run}: {label} {fixed} {' '.join(sweep)}")
                    sim = SimSettings(run=run, policies=(family,), judge=judge, truncate=rule,
                                      orders=s.orders, seed=s.seed, params=fixed, sweep=sweep, limit=s.limit,
                                      crossfit=s.crossfit if family in JUDGED else None, fill_scores=True)
                    for r in simulate(cache, sim, store=False):
                        points.append(Point.of(label, r, r.params.get("judge"), rule if family in PREFIXED else None))
                        notes += [w for w in r.warnings if "trained on" not in w and "K2" not in w]
                seconds[label] = time.perf_counter() - t1
    meta = {"run": run, "n": n, "n_min": min(ns), "problems": len(problems),
            "truncate": ", ".join(s.rules), "rules": list(s.rules),
            "orders": s.orders, "seed": s.seed, "crossfit": s.crossfit, "judges": list(s.judges),
            "model": info.get("model"), "has_logprobs": conf, "family_seconds": seconds, "notes": notes,
            "t0": t0}
    return points, meta


def _label(family: str, judge: str, rule: str, s: FrontierSettings) -> str:
    """The family's name in tables: with its judge (judged families) and its rule (several rules)."""
    tags = ([judge] if family in JUDGED else []) + ([rule] if family in PREFIXED and len(s.rules) > 1 else [])
    return f"{family}[{', '.join(tags)}]" if tags else family


def summarize(points: list[Point], meta: dict, s: FrontierSettings) -> dict:
    """The frontier result of one run from its points (JSON-ready)."""
    cons = next((p for p in points if p.policy == "cons"), None)
    if cons is None:
        raise DPError("dp frontier needs the cons family (the reference of every token share)")
    notes = list(meta["notes"])
    for fam in dict.fromkeys(p.family for p in points if p.in_sample):
        k = sum(p.in_sample and p.family == fam for p in points)
        notes.append(f"{fam}: judge trained on this run's problems: its {k} points are flagged and left off "
                     "the front and the budget table (use --crossfit K or a judge trained elsewhere)")
    out = {k: v for k, v in meta.items() if k not in ("notes", "t0")}
    out.update({
        "full_tokens": cons.full_tokens, "cons_accuracy": cons.accuracy, "budgets": list(s.budgets),
        "points": [p.as_dict() for p in points], "front": [p.as_dict() for p in pareto_front(points)],
        "table": budget_table(points, s.budgets), "notes": list(dict.fromkeys(notes)),
        "seconds": time.perf_counter() - meta["t0"],
    })
    return out
