"""Figure 4, threshold ablation: DeepPrune's token reduction, accuracy and pass rate against tau.

One DeepPrune point per tau of the grid and run (`dp.figures.points`: read from
`sim_points`, or computed by `simulate` as a tau sweep), the same numbers
`dp simulate --policy deepprune --sweep tau=... --json` prints for the same
judge, truncation, orders and seed. Bands: one standard deviation over arrival
orders. The accuracy panel marks cons@N (dashed) per run. Pass rate = share of
(problem, order) where a correct answer is among the traces allowed to finish
(the paper's "correct answer survives pruning"). Replays nothing itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp.figures.common import FigureResult, color, new_figure, pct_array, save, ungraded_note
from dp.figures.points import PointSpec, PointStore, simulate_command, summary_row

NAME = "threshold"


def threshold_figure(store: PointStore, runs: list[str], out_dir: Path, judge: str, truncate: str,
                     taus: tuple[float, ...], orders: int, order_kind: str, seed: int) -> FigureResult:
    res = FigureResult(
        NAME, "Threshold ablation (DeepPrune)",
        f"DeepPrune with the {judge} judge ({truncate}) at each threshold tau: token reduction against "
        "cons@N, accuracy (dashed: cons@N) and pass rate; bands are one standard deviation over "
        f"{orders} arrival orders.")
    if not runs:
        return res.skip("no run with traces")
    per_run = {}
    for run in runs:
        def spec(policy: str, tau: float, run=run) -> PointSpec:
            return PointSpec(run, policy, float(tau), judge, truncate, orders, order_kind, seed)

        specs = [spec("deepprune", t) for t in taus]
        points = store.get(specs)
        cons = store.get([spec("cons", taus[0])])[0]
        per_run[run] = (points, cons)
        for s, p in zip(specs, points, strict=True):
            res.rows.append({**summary_row(run, p), "tau": s.tau,
                             "token_reduction_std": p["tokens_std"] / p["full_tokens"] if p["full_tokens"] else 0.0})
        res.data.setdefault("cons", {})[run] = summary_row(run, cons)
        if note := ungraded_note(run, cons):
            res.notes.append(note)
        res.data.setdefault("per_problem", {}).update(
            {f"{run}/tau={s.tau!r}": p["per_problem"] for s, p in zip(specs, points, strict=True)})
        res.data.setdefault("commands", {})[run] = simulate_command(specs, store.cache.path)
    res.columns = ["run", "tau", "token_reduction", "accuracy", "accuracy_std", "pass_rate", "tokens",
                   "judge_pairs", "point_id"]
    res.notes.append("the same numbers: " + "; ".join(res.data["commands"].values()))

    fig, axes = new_figure(3, width=3.6)
    for i, run in enumerate(runs):
        rows = [r for r in res.rows if r["run"] == run]
        tau = np.array([r["tau"] for r in rows])
        red = 100 * np.array([r["token_reduction"] for r in rows])
        red_sd = 100 * np.array([r["token_reduction_std"] for r in rows])
        acc = pct_array([r["accuracy"] for r in rows])  # NaN (not drawn) where no problem has gold
        acc_sd = pct_array([r["accuracy_std"] for r in rows])
        passed = pct_array([r["pass_rate"] for r in rows])
        c = color(i)
        axes[0].plot(tau, red, marker=".", color=c, label=run)
        axes[0].fill_between(tau, red - red_sd, red + red_sd, color=c, alpha=0.2, lw=0)
        axes[1].plot(tau, acc, marker=".", color=c, label=run)
        axes[1].fill_between(tau, acc - acc_sd, acc + acc_sd, color=c, alpha=0.2, lw=0)
        if per_run[run][1]["accuracy"] is not None:
            axes[1].axhline(100 * per_run[run][1]["accuracy"], ls="--", color=c, lw=1)
        axes[2].plot(tau, passed, marker=".", color=c, label=run)
    for ax, label in zip(axes, ("token reduction vs cons@N (%)", "accuracy (%)", "pass rate (%)"), strict=True):
        ax.set_xlabel("threshold tau")
        ax.set_ylabel(label)
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
    axes[0].set_title("tokens saved")
    axes[1].set_title("accuracy (dashed: cons@N)")
    axes[2].set_title("correct answer survives")
    res.files = save(fig, out_dir, NAME)
    return res
