"""Figure 6, Pareto view: accuracy against tokens for every simulator point stored for a run.

Reads all of the run's `sim_points` rows (whatever policy, setting, judge, order
count or seed swept them - after figures 4 and 5 these include their points),
keeps the latest row of each distinct setting and drops rows made from other
traces than the run holds now (noted). One panel per run; colour = policy; the
line joins the points no other point beats on both tokens and accuracy. Computes
nothing new: a setting nobody simulated is not on it.
"""

from __future__ import annotations

import json
from pathlib import Path

from dp.figures.common import FigureResult, new_figure, policy_color, save
from dp.figures.points import PointStore, summary_row
from dp.simulate.policies.registry import make_policy

NAME = "pareto"
MAX_TABLE_ROWS = 200  # report.md shows the frontier and at most this many rows; figures.json has all


def setting_label(policy: str, params: dict) -> str:
    """The params that differ from the policy's defaults, plus judge and truncation, as `k=v ...`."""
    try:
        defaults = make_policy(policy).params_dict
    except Exception:  # noqa: BLE001 - a policy stored by another dp version
        defaults = {}
    parts = [f"{k}={v}" for k, v in sorted(params.items())
             if k not in ("judge", "truncate") and defaults.get(k, object()) != v]
    parts += [f"{k}={params[k]}" for k in ("judge", "truncate") if k in params]
    return " ".join(parts)


def frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated (fewer-or-equal tokens and higher-or-equal accuracy,
    one strictly better), sorted by tokens."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    out, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            out.append(i)
            best = points[i][1]
    return out


def pareto_figure(store: PointStore, runs: list[str], out_dir: Path) -> FigureResult:
    res = FigureResult(
        NAME, "Accuracy against tokens, every stored setting",
        "Every simulator point stored for the run (all policies, settings, judges and seeds swept so "
        "far): mean tokens per problem against accuracy; the line is the Pareto frontier.")
    panels = {}
    for run in runs:
        latest: dict[str, dict] = {}
        stale = 0
        for p in store.stored(run):
            if not store.is_current(run, p):
                stale += 1
                continue
            key = json.dumps([p["policy"], p["params"], p["orders"], p["order_kind"], p["seed"],
                              p["dp_version"], p["git_hash"]], sort_keys=True)
            latest[key] = p
        if stale:
            res.notes.append(f"run '{run}': {stale} stored points were made from other traces than the "
                             "run holds now and are left out")
        pts = list(latest.values())
        if not pts:
            res.notes.append(f"run '{run}': no simulator points stored")
            continue
        versions = {(p["dp_version"], p["git_hash"]) for p in pts}
        if len(versions) > 1:
            res.notes.append(f"run '{run}': points from {len(versions)} dp versions/git hashes")
        xy = [(p["tokens"] / max(p["problems"], 1), p["accuracy"]) for p in pts]
        front = set(frontier(xy))
        rows = []
        for i, p in enumerate(pts):
            rows.append({**summary_row(run, p), "setting": setting_label(p["policy"], p["params"]),
                         "tokens_per_problem": xy[i][0], "on_frontier": i in front,
                         "git_hash": p["git_hash"]})
        rows.sort(key=lambda r: (r["policy"], r["tokens_per_problem"]))
        panels[run] = rows
        res.rows += rows
    if not panels:
        return res.skip("no simulator points stored for the runs")
    res.columns = ["run", "policy", "setting", "orders", "seed", "tokens_per_problem", "token_reduction",
                   "accuracy", "on_frontier", "point_id"]
    res.data = {"max_table_rows": MAX_TABLE_ROWS}

    fig, axes = new_figure(len(panels), width=4.4, height=3.8)
    for ax, (run, rows) in zip(axes, panels.items(), strict=True):
        policies = list(dict.fromkeys(r["policy"] for r in rows))
        for i, pol in enumerate(policies):
            mine = [r for r in rows if r["policy"] == pol]
            ax.scatter([r["tokens_per_problem"] for r in mine], [100 * r["accuracy"] for r in mine],
                       s=18, color=policy_color(pol, i), label=pol, alpha=0.85, zorder=3)
        front = sorted((r for r in rows if r["on_frontier"]), key=lambda r: r["tokens_per_problem"])
        fx, fy = [r["tokens_per_problem"] for r in front], [100 * r["accuracy"] for r in front]
        ax.step(fx, fy, where="post", color="black", lw=1, ls="--", zorder=2)
        ax.scatter(fx, fy, s=70, facecolors="none", edgecolors="black", lw=1, label="frontier", zorder=4)
        ax.set_xlim(left=0)
        ax.set_xlabel("tokens per problem (mean over orders)")
        ax.set_title(f"{run} ({len(rows)} points)", fontsize=10)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("accuracy (%)")
    res.files = save(fig, out_dir, NAME)
    return res
