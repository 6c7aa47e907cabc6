"""Figure 5, the main table as a figure: token reduction and accuracy of every policy, per run.

Policies: cons@N, DeepConf-low/-high (only where the run has token confidences;
otherwise left out with the reason), DeepPrune at the figures' tau with the
figures' judge, ESC, Adaptive-Consistency, random pruning at DeepPrune's finish
budget and DeepPrune with the oracle judge, all at their default settings; DeepPrune
and the oracle each followed by their paired, budget-matched random control
(`dp.simulate.replay.matched`) and the accuracy difference with its standard error. The
points come from `dp.figures.points` - the numbers `dp simulate --json` prints
for the same flags. Error bars: one standard deviation over arrival orders.
Replays nothing itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.figures.common import FigureResult, new_figure, policy_color, save
from dp.figures.points import PointSpec, PointStore, simulate_command, summary_row
from dp.figures.settings import CONFIDENCE_POLICIES, MAIN_POLICIES

NAME = "main_table"
MATCHED = " matched-random"


def _rank(policy: str) -> tuple[int, int]:
    """Table order: MAIN_POLICIES, each policy's matched control right after it."""
    base = policy.removesuffix(MATCHED)
    return (MAIN_POLICIES.index(base) if base in MAIN_POLICIES else len(MAIN_POLICIES), policy != base)


def has_confidence(store: PointStore, run: str) -> bool:
    """Whether any token of the run has a stored confidence (DeepConf's input)."""
    return bool(store.cache.con.execute(
        "SELECT count(*) > 0 FROM (SELECT 1 FROM tokens JOIN traces USING (trace_id) "
        "WHERE run = ? AND confidence IS NOT NULL LIMIT 1)", [run]).fetchall()[0][0])


def main_table_figure(store: PointStore, runs: list[str], out_dir: Path, judge: str, truncate: str,
                      tau: float, orders: int, order_kind: str, seed: int) -> FigureResult:
    res = FigureResult(
        NAME, "Main table: token reduction and accuracy per policy",
        f"Every policy at its default settings (DeepPrune: tau {tau:g}, {judge} judge, {truncate}); "
        f"token reduction against cons@N and accuracy, error bars one standard deviation over "
        f"{orders} arrival orders.")
    if not runs:
        return res.skip("no run with traces")
    commands, per_problem = {}, {}
    for run in runs:
        def spec(policy: str, run=run) -> PointSpec:
            return PointSpec(run, policy, float(tau), judge, truncate, orders, order_kind, seed)

        conf = [spec(p) for p in MAIN_POLICIES if p in CONFIDENCE_POLICIES]
        rest = [spec(p) for p in MAIN_POLICIES if p not in CONFIDENCE_POLICIES]
        got = {}
        if not has_confidence(store, run):
            res.notes.append(f"run '{run}': DeepConf skipped: the run has no token log-probs "
                             "(no stored token confidences), which DeepConf needs")
        else:
            try:
                got.update(zip(conf, store.get(conf), strict=True))
            except DPError as e:
                res.notes.append(f"run '{run}': DeepConf skipped: {e}")
        got.update(zip(rest, store.get(rest), strict=True))
        for s in (x for x in (*conf, *rest) if x in got):  # the order of MAIN_POLICIES
            p = got[s]
            res.rows.append({**summary_row(run, p), "token_reduction_std":
                             p["tokens_std"] / p["full_tokens"] if p["full_tokens"] else 0.0,
                             "prefix_share": p.get("prefix_share"),
                             "diff_vs_matched": p.get("matched_accuracy_diff"),
                             "diff_vs_matched_se": p.get("matched_accuracy_diff_se")})
            if "matched_tokens" in p:  # the paired, budget-matched random control on the same orders
                res.rows.append({
                    "run": run, "policy": f"{s.policy}{MATCHED}", "point_id": p["point_id"],
                    "token_reduction": p["matched_token_reduction"], "token_reduction_std": 0.0,
                    "accuracy": p["matched_accuracy"], "accuracy_std": None, "pass_rate": p["matched_pass_rate"],
                    "tokens": p["matched_tokens"], "judge_pairs": 0, "prefix_share": p.get("prefix_share"),
                    "diff_vs_matched": None, "diff_vs_matched_se": None})
        commands[run] = simulate_command(list(got), store.cache.path)
        per_problem.update({f"{run}/{s.policy}": p["per_problem"] for s, p in got.items()})
    res.rows.sort(key=lambda r: (runs.index(r["run"]), _rank(r["policy"])))
    res.columns = ["run", "policy", "token_reduction", "token_reduction_std", "accuracy", "accuracy_std",
                   "diff_vs_matched", "diff_vs_matched_se", "pass_rate", "prefix_share", "tokens",
                   "judge_pairs", "point_id"]
    res.notes.append(f"'X{MATCHED}': random pruning paired with X on the same arrival orders, finishing "
                     "exactly as many traces as X did in each; diff_vs_matched = X's accuracy minus the "
                     "control's, mean over orders, with its standard error: what the judge itself adds")
    res.data = {"commands": commands, "per_problem": per_problem}
    res.notes.append("the same numbers: " + "; ".join(commands.values()))

    policies = sorted({r["policy"] for r in res.rows}, key=_rank)
    fig, axes = new_figure(2, width=min(max(5.0, 0.3 * len(policies) * len(runs) + 2.0), 14.0),
                           height=3.0, stacked=True)
    width = 0.8 / len(runs)
    hatches = ("", "//", "..", "xx", "\\\\", "oo")
    for j, run in enumerate(runs):
        by_policy = {r["policy"]: r for r in res.rows if r["run"] == run}
        x = np.arange(len(policies)) + (j - (len(runs) - 1) / 2) * width
        for ax, key, sd in ((axes[0], "token_reduction", "token_reduction_std"),
                            (axes[1], "accuracy", "accuracy_std")):
            vals = [100 * by_policy[p][key] if p in by_policy else np.nan for p in policies]
            errs = [100 * (by_policy[p][sd] or 0.0) if p in by_policy else 0.0 for p in policies]
            ax.bar(x, vals, width, yerr=errs, capsize=2, hatch=hatches[j % len(hatches)],
                   color=[policy_color(p, i) for i, p in enumerate(policies)], edgecolor="black",
                   lw=0.5, label=run, error_kw={"lw": 0.8})
            for xi, v in zip(x, vals, strict=True):
                if np.isnan(v):  # left out (no confidences): say so instead of a silent gap
                    ax.text(xi, 1, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    for ax, label in zip(axes, ("token reduction vs cons@N (%)", "accuracy (%)"), strict=True):
        ax.set_xticks(range(len(policies)), policies, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.axhline(0, color="black", lw=0.6)
        if len(runs) > 1:
            ax.legend(fontsize=7, title="run (hatch)", title_fontsize=7)
    axes[1].set_ylim(0, 105)
    axes[0].set_title("tokens saved")
    axes[1].set_title("accuracy")
    res.files = save(fig, out_dir, NAME)
    return res
