"""Figure 2, judge ROC curves: every judge on the same sampled pairs, one panel per run.

For each run, one seeded sample of labelled same-problem pairs (`dp.judge.sampled_pairs`)
under the figures' truncation rule; each judge scores exactly those pairs
(through the judge-score cache) and its ROC curve is drawn with its AUROC in the
legend (`dp.judge.metrics`; "positive" = same final answer, so the false-positive
rate is the share of different-answer pairs the judge would merge). Several runs
(models) give a cross-model view. A judge that cannot be loaded (no shipped
features judge, no sentence-transformers) is left out with its reason; a run whose
pairs have one label only gets no panel. Nothing here simulates pruning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dp.cache.store import Cache
from dp.errors import DPError
from dp.figures.common import FigureResult, color, new_figure, save
from dp.judge.metrics import auroc, tnr_at_fnr
from dp.judge.sampled_pairs import both_labels, judge_scores, sample_pairs, try_load

NAME = "roc"
CURVE_DECIMALS = 4


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the scores against labels 1 = same answer."""
    from sklearn.metrics import roc_curve as _roc

    fpr, tpr, _ = _roc(labels.astype(bool), scores)
    return fpr, tpr


def roc_figure(cache: Cache, runs: list[str], out_dir: Path, judges: tuple[str, ...], truncate: str,
               max_pairs: int, seed: int) -> FigureResult:
    res = FigureResult(
        NAME, "Judge ROC curves",
        f"ROC of each judge on the same seeded sample of at most {max_pairs} labelled pairs per run "
        f"(prefixes cut by {truncate}); positive = the two traces reach the same final answer. "
        "AUROC in the legend; TNR at FNR 0.2 in the table.")
    loaded = {}
    for name in judges:
        judge, why = try_load(name, seed)
        if judge is None:
            res.notes.append(f"judge '{name}' left out: {why}")
        else:
            loaded[name] = judge
    if not loaded:
        return res.skip("no judge could be loaded")
    panels = []
    curves: dict = {}
    for run in runs:
        pairs = sample_pairs(cache, run, truncate, max_pairs, seed)
        if not both_labels(pairs):
            res.notes.append(f"run '{run}': its {pairs.n} pairs do not have both labels; AUROC undefined")
            continue
        panels.append(run)
        curves[run] = {}
        for name, judge in list(loaded.items()):
            try:
                s = judge_scores(cache, judge, pairs)
            except (DPError, ImportError, OSError) as e:  # e.g. a model that cannot be loaded
                res.notes.append(f"judge '{name}' left out: {e}")
                del loaded[name]
                continue
            fpr, tpr = roc_curve(s, pairs.labels)
            row = {"run": run, "judge": name, "judge_key": judge.name, "pairs": pairs.n,
                   "positive_rate": pairs.positive_rate, "auroc": auroc(s, pairs.labels),
                   "tnr_at_fnr_0_2": tnr_at_fnr(s, pairs.labels, 0.2)}
            res.rows.append(row)
            curves[run][name] = {"auroc": row["auroc"], "fpr": np.round(fpr, CURVE_DECIMALS).tolist(),
                                 "tpr": np.round(tpr, CURVE_DECIMALS).tolist()}
    if not panels:
        return res.skip("no run has pairs of both labels")
    res.columns = ["run", "judge", "pairs", "positive_rate", "auroc", "tnr_at_fnr_0_2"]
    res.data = {"truncate": truncate, "max_pairs_per_run": max_pairs, "seed": seed, "curves": curves}

    fig, axes = new_figure(len(panels), width=3.8, height=3.8, sharey=True)
    for ax, run in zip(axes, panels, strict=True):
        n = next(r["pairs"] for r in res.rows if r["run"] == run)
        roc_panel(ax, curves[run], f"{run} ({n} pairs)")
    axes[0].set_ylabel("true-positive rate (same pairs found)")
    res.files = save(fig, out_dir, NAME)
    return res


def roc_panel(ax, curves: dict, title: str, small: bool = False) -> None:
    """One ROC panel: the chance diagonal, one curve per judge ({name: {fpr, tpr, auroc}}), AUROC in the legend."""
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(c["fpr"], c["tpr"], color=color(i), lw=1.4 if small else 1.6, label=f"{name} ({c['auroc']:.3f})")
    ax.set_title(title, fontsize=9 if small else 10)
    ax.set_xlabel("false-positive rate (different pairs merged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=6 if small else 7, title="judge (AUROC)", title_fontsize=6 if small else 7)
