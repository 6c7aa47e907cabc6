"""dp.figures: every figure of the paper's story, regenerated from a trace cache.

`make_figures(cache, runs, out_dir, settings) -> Report` draws, as PNG and PDF:
1. inter-trace redundancy (`redundancy`), 2. judge ROC curves (`roc`),
3. truncation ablation (`truncation`), 4. threshold ablation (`threshold`),
5. the main table (`main_table`), 6. accuracy against tokens (`pareto`),
7. live against simulated tokens (`live`), the frontier of each run that `dp frontier --out`
wrote there (`frontier`), and writes report.md and figures.json.
Simulator numbers are read from `sim_points` or computed by `dp.simulate.replay.sweep.simulate`
(`points`); judge scores go through the judge-score cache. Nothing here generates traces.
"""

from dp.figures.make import FIGURES, make_figures
from dp.figures.report import Report
from dp.figures.settings import FigureSettings

__all__ = ["FIGURES", "FigureSettings", "Report", "make_figures"]
