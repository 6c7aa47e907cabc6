"""`make_figures`: the library call behind `dp figures`. Draws every figure of one cache and
writes report.md and figures.json.

Picks the runs (figures 1-6: the given or all non-live runs with traces; figure 7:
the live runs among them), resolves the judges (`dp.figures.settings`), then calls
one function per figure module in order - redundancy, ROC, truncation ablation,
threshold ablation, main table, Pareto, live (then the leave-one-run-out ROC figures when
`dp judge loro` stored judge_loro.json in the output folder) - sharing one `PointStore`, so every
simulator number is read from or stored in `sim_points`. A figure whose data is
missing comes back skipped with its reason; a DPError (or a missing optional
dependency) inside one figure skips that figure with the error, and the others are
still drawn. Knows nothing about click.
"""

from __future__ import annotations

from pathlib import Path

from dp.cache.store import Cache
from dp.errors import DPError
from dp.figures.common import FigureResult
from dp.figures.live import live_figure, live_runs
from dp.figures.loro import stored_loro_figures
from dp.figures.main_table import main_table_figure
from dp.figures.pareto import pareto_figure
from dp.figures.points import PointStore
from dp.figures.redundancy import redundancy_figure
from dp.figures.report import Report
from dp.figures.roc import roc_figure
from dp.figures.settings import FigureSettings, resolve_judges
from dp.figures.threshold import threshold_figure
from dp.figures.truncation import truncation_figure
from dp.provenance import stamp
from dp.simulate.replay.sweep import reuse_contexts

FIGURES = ("redundancy", "roc", "truncation", "threshold", "main_table", "pareto", "live")


def pick_runs(cache: Cache, runs: list[str] | None) -> tuple[list[str], list[str], list[str]]:
    """(runs for figures 1-6, live runs for figure 7, notes). Unknown runs are a DPError."""
    names = list(dict.fromkeys(runs)) if runs else cache.runs()
    for r in names:
        cache.run_info(r)  # unknown run: one-line error naming the runs that exist
    if not names:
        raise DPError(f"{cache.path} has no runs; run `dp generate` or `dp import` first")
    live = live_runs(cache, names)
    with_traces = {r for (r,) in cache.con.execute("SELECT DISTINCT run FROM traces").fetchall()}
    notes, sim = [], []
    for r in names:
        if cache.run_info(r)["source"] == "live":
            continue
        if r not in with_traces:
            notes.append(f"run '{r}' has no traces and is left out")
            continue
        sim.append(r)
    return sim, live, notes


def _guard(name: str, title: str, fn, *args) -> FigureResult:
    try:
        return fn(*args)
    except (DPError, ImportError) as e:  # bad input, or an optional dependency a judge needs
        return FigureResult(name, title, "").skip(f"failed: {e}")


def _draw(cache: Cache, sim_runs, live, out: Path, s: FigureSettings, judges, store: PointStore,
          common: tuple) -> list[FigureResult]:
    """Every figure in order (a figure that fails is returned skipped, with its reason)."""
    return [
        _guard("redundancy", "Inter-trace redundancy", redundancy_figure, cache, sim_runs, out),
        _guard("roc", "Judge ROC curves", roc_figure, cache, sim_runs, out, judges.roc, s.truncate,
               s.max_pairs, s.seed),
        _guard("truncation", "Truncation ablation", truncation_figure, cache, sim_runs, out, judges.ablation,
               s.token_ks, s.word_ks, s.max_pairs, s.seed),
        _guard("threshold", "Threshold ablation (DeepPrune)", threshold_figure, store, sim_runs, out,
               judges.main, s.truncate, s.taus, *common),
        _guard("main_table", "Main table", main_table_figure, store, sim_runs, out, judges.main,
               s.truncate, s.tau, *common),
        _guard("pareto", "Accuracy against tokens", pareto_figure, store, sim_runs, out),
        _guard("live", "Live against simulated tokens", live_figure, cache, live, out),
    ]


def make_figures(cache: Cache, runs: list[str] | None, out_dir: str | Path,
                 settings: FigureSettings | None = None) -> Report:
    """Draw every figure for `runs` (None: all) of `cache` into `out_dir`; write and return the report.

    Open the cache for writing to store the simulator points computed on the way."""
    s = settings or FigureSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sim_runs, live, notes = pick_runs(cache, runs)
    judges = resolve_judges(s)
    store = PointStore(cache, fresh=s.fresh)
    common = (s.orders, s.order_kind, s.seed)
    with reuse_contexts():  # the figures' simulator calls read each run's contexts once, not per call
        figures = _draw(cache, sim_runs, live, out, s, judges, store, common)
    try:  # the leave-one-run-out ROC figures, when `dp judge loro --out` wrote judge_loro.json here
        figures += stored_loro_figures(out)
    except DPError as e:
        figures.append(FigureResult("roc_loro", "Leave-one-run-out judge ROC", "").skip(f"failed: {e}"))
    report = Report(
        out_dir=out, cache=cache.path, runs=sim_runs, live_runs=live, settings=s.as_dict(),
        judges={"main": judges.main, "ablation": judges.ablation, "roc": list(judges.roc)},
        provenance=stamp(), figures=figures, notes=notes + list(judges.notes),
        points={"reused": store.reused, "computed": store.computed, "stored": bool(cache.write)},
    )
    report.write()
    return report
