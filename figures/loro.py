"""The leave-one-run-out ROC figures: one per held-out run, one panel per truncation rule.

Draws the result of `dp judge loro` (`dp.judge.loro`), stored as `judge_loro.json` in a
figures folder. `dp judge loro --out DIR` draws them at once; `dp figures --out DIR`
picks the file up when it is there and puts the figures in report.md
(`stored_loro_figures`). Nothing here scores pairs or reads the cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from dp.errors import DPError
from dp.figures.common import FigureResult, new_figure, save
from dp.figures.roc import roc_panel

LORO_FILE = "judge_loro.json"
COLUMNS = ["run", "truncate", "judge", "pairs", "positive_rate", "auroc", "tnr_at_fnr_0_2",
           "seconds_per_1000_pairs"]


def loro_figures(result: dict, out_dir: str | Path) -> list[FigureResult]:
    """One FigureResult (PNG + PDF) per held-out group of a `leave_one_run_out` result."""
    figures = []
    for group, panels in result["curves"].items():
        run = result["groups"][group][0]
        res = FigureResult(
            f"roc_loro_{group}", f"Judge ROC on held-out {group}",
            f"ROC of each judge on run '{run}', which no trained judge here saw (they were trained on the "
            f"runs of every other group); one panel per prefix rule, AUROC in the legend.")
        res.rows = [{k: r.get(k) for k in COLUMNS} for r in result["rows"] if r["heldout"] == group]
        res.columns = COLUMNS
        fig, axes = new_figure(len(panels), width=3.8, height=3.8, sharey=True)
        for ax, (rule, curves) in zip(axes, panels.items(), strict=True):
            n = next(r["pairs"] for r in res.rows if r["truncate"] == rule)
            roc_panel(ax, curves, f"{run}, {rule} ({n} pairs)", small=True)
        axes[0].set_ylabel("true-positive rate (same pairs found)")
        res.files = save(fig, Path(out_dir), res.name)
        figures.append(res)
    return figures


def write_loro(result: dict, out_dir: str | Path) -> list[FigureResult]:
    """Store the result as OUT/judge_loro.json and draw its figures there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / LORO_FILE).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return loro_figures(result, out)


def stored_loro_figures(out_dir: str | Path) -> list[FigureResult]:
    """The figures of OUT/judge_loro.json if `dp judge loro` wrote one there, else none."""
    path = Path(out_dir) / LORO_FILE
    if not path.is_file():
        return []
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        return loro_figures(result, out_dir)
    except (OSError, ValueError, KeyError, StopIteration) as e:
        raise DPError(f"cannot draw {path}: {e}") from None
