"""Figure 7, live against simulated: tokens a live DeepPrune run really generated, per problem,
against what the simulator predicted for the same problems.

A live run is a run whose `source` is 'live' and which has rows in `live_traces`.
Live tokens of a problem = the sum of `tokens_generated` over its live traces.
The prediction comes from the live run's settings JSON: `compare_with` (the run
it was compared with) and `simulated_per_problem`, either {problem_id: tokens},
{problem_id: {"tokens": ...}} or a list of {"problem_id", "tokens"} records (the
simulator's per-problem rows). Without a live run the figure is skipped with the
reason; it never runs anything live or simulated itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dp.cache.live import live_tokens_per_problem, runs_with_live_rows
from dp.cache.store import Cache
from dp.figures.common import FigureResult, color, new_figure, save

NAME = "live"


def live_runs(cache: Cache, runs: list[str] | None = None) -> list[str]:
    """Runs with source 'live' and rows in `live_traces` (among `runs` when given)."""
    return [r for r in runs_with_live_rows(cache) if runs is None or r in runs]


def simulated_tokens(settings: dict) -> dict[str, float]:
    """problem_id -> simulated tokens from a live run's settings (empty when absent)."""
    sim = settings.get("simulated_per_problem")
    if isinstance(sim, str):
        sim = json.loads(sim)
    out: dict[str, float] = {}
    if isinstance(sim, dict):
        for pid, v in sim.items():
            out[str(pid)] = float(v["tokens"] if isinstance(v, dict) else v)
    elif isinstance(sim, list):
        for rec in sim:
            out[str(rec["problem_id"])] = float(rec["tokens"])
    return out


def live_tokens(cache: Cache, run: str) -> dict[str, float]:
    """problem_id -> tokens generated live (sum over the problem's live traces)."""
    return {str(p): float(t) for p, t in live_tokens_per_problem(cache, run).items()}


def live_figure(cache: Cache, runs: list[str] | None, out_dir: Path) -> FigureResult:
    res = FigureResult(
        NAME, "Live against simulated tokens",
        "Per problem: tokens a live run generated (y) against the simulator's prediction for the same "
        "problems (x); on the dotted diagonal the simulation was exact.")
    names = live_runs(cache, runs)
    if not names:
        everywhere = live_runs(cache)
        if everywhere:
            return res.skip(f"no live run among the selected runs (live runs in the cache: {', '.join(everywhere)})")
        return res.skip("no live run in the cache (a run with source 'live' and rows in live_traces); "
                        "run one with `dp live` first")
    panels = {}
    for run in names:
        settings = cache.run_info(run)["settings"]
        sim = simulated_tokens(settings)
        live = live_tokens(cache, run)
        common = sorted(set(sim) & set(live))
        if not common:
            res.notes.append(f"live run '{run}': its settings hold no simulated tokens for its problems "
                             "('simulated_per_problem'); left out")
            continue
        rows = [{"run": run, "compare_with": settings.get("compare_with"), "problem_id": p,
                 "simulated_tokens": sim[p], "live_tokens": live[p],
                 "ratio": live[p] / sim[p] if sim[p] else None} for p in common]
        panels[run] = rows
        res.rows += rows
        s, lv = sum(sim[p] for p in common), sum(live[p] for p in common)
        res.data.setdefault("totals", {})[run] = {
            "compare_with": settings.get("compare_with"), "problems": len(common),
            "simulated_tokens": s, "live_tokens": lv, "ratio": lv / s if s else None}
    if not panels:
        return res.skip("no live run records simulated tokens per problem")
    res.columns = ["run", "compare_with", "problem_id", "simulated_tokens", "live_tokens", "ratio"]

    fig, axes = new_figure(len(panels), width=3.8, height=3.8)
    for i, (ax, (run, rows)) in enumerate(zip(axes, panels.items(), strict=True)):
        x = np.array([r["simulated_tokens"] for r in rows])
        y = np.array([r["live_tokens"] for r in rows])
        hi = float(max(x.max(), y.max(), 1.0)) * 1.05
        ax.plot([0, hi], [0, hi], ls=":", color="grey", lw=1)
        ax.scatter(x, y, s=16, color=color(i), zorder=3)
        t = res.data["totals"][run]
        ax.set_title(f"{run} vs {t['compare_with']}: live/sim = {t['ratio']:.2f}" if t["ratio"] else run,
                     fontsize=9)
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_xlabel("simulated tokens per problem")
    axes[0].set_ylabel("live tokens per problem")
    res.files = save(fig, out_dir, NAME)
    return res
