"""Figure 1, inter-trace redundancy: how often two traces of one question reach the same answer.

Left: the share of same-problem trace pairs whose final answers are equivalent,
per run (`dp.cache.info.run_stats`, the paper's "over 80%"). Right: the
distribution over problems of the largest answer class's share of the traces
(1.0 = every trace agrees). Both come from the stored answer classes
(`dp.cache.info.same_answer_pairs`); traces without an answer count in the
denominators and in no class. Reads the cache only; simulates nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp.cache.info import run_stats, same_answer_pairs
from dp.cache.store import Cache
from dp.figures.common import FigureResult, color, new_figure, pct, save

NAME = "redundancy"
PAPER_LINE = 0.8  # "over 80% of trace pairs reach the same answer"


def problem_rows(cache: Cache, run: str) -> list[dict]:
    """Per problem: traces, same-answer pairs, all pairs, answer classes, largest class share."""
    out = []
    for p in cache.load_run(run):
        same, pairs = same_answer_pairs(p)
        valid = p.classes[p.classes >= 0]
        counts = np.bincount(valid) if valid.size else np.zeros(0, dtype=np.int64)
        counts = counts[counts > 0]
        out.append({"problem_id": p.problem.problem_id, "traces": p.n, "same_pairs": same, "pairs": pairs,
                    "answer_classes": int(counts.size),
                    "largest_share": float(counts.max() / p.n) if counts.size and p.n else 0.0})
    return out


def redundancy_figure(cache: Cache, runs: list[str], out_dir: Path) -> FigureResult:
    fig_result = FigureResult(
        NAME, "Inter-trace redundancy",
        "Left: share of same-problem trace pairs whose final answers are equivalent (dashed: the "
        "paper's 80%). Right: per problem, the share of traces in its largest answer class.")
    if not runs:
        return fig_result.skip("no run with traces")
    per_run = {}
    for run in runs:
        stats = run_stats(cache, run)
        probs = problem_rows(cache, run)
        shares = np.array([p["largest_share"] for p in probs])
        classes = np.array([p["answer_classes"] for p in probs])
        per_run[run] = probs
        fig_result.rows.append({
            "run": run, "model": stats["model"], "problems": stats["problems"], "traces": stats["traces"],
            "same_answer_pairs_pct": pct(stats["same_answer_pair_rate"]),
            "mean_largest_class_pct": pct(float(shares.mean())) if shares.size else None,
            "unanimous_problems_pct": pct(float((shares == 1.0).mean())) if shares.size else None,
            "median_answer_classes": float(np.median(classes)) if classes.size else None,
        })
    fig_result.columns = ["run", "model", "problems", "traces", "same_answer_pairs_pct",
                          "mean_largest_class_pct", "unanimous_problems_pct", "median_answer_classes"]
    fig_result.data = {"per_problem": per_run, "paper_line": PAPER_LINE}

    fig, (ax, hx) = new_figure(2, width=4.4)
    rates = [r["same_answer_pairs_pct"] or 0.0 for r in fig_result.rows]
    bars = ax.bar(range(len(runs)), rates, color=[color(i) for i in range(len(runs))])
    ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax.axhline(100 * PAPER_LINE, ls="--", color="black", lw=1, label="paper: 80%")
    ax.set_xticks(range(len(runs)), runs, rotation=30 if len(runs) > 3 else 0, ha="right" if len(runs) > 3 else "center")
    ax.set_ylim(0, 105)
    ax.set_ylabel("same-answer trace pairs (%)")
    ax.set_title("pairs reaching the same answer")
    ax.legend(loc="lower right", fontsize=8)
    bins = np.linspace(0, 1, 11)
    for i, run in enumerate(runs):
        shares = [p["largest_share"] for p in per_run[run]]
        hx.hist(shares, bins=bins, histtype="step", lw=1.8, color=color(i), label=run,
                weights=np.full(len(shares), 100.0 / max(len(shares), 1)))
    hx.set_xlabel("share of traces in the largest answer class")
    hx.set_ylabel("problems (%)")
    hx.set_title("largest answer class per problem")
    hx.legend(fontsize=8)
    fig_result.files = save(fig, out_dir, NAME)
    return fig_result
