"""The notebook API: the handful of calls a researcher needs, each the library call behind a command.

    import dp
    cache = dp.open_cache("dp.duckdb")
    dp.runs(cache)                                   # what `dp cache info` prints, one row per run
    dp.traces(cache, "default").to_pandas()          # one row per trace (`dp export`)
    dp.replay(cache, "default", ["deepprune", "cons"], truncate="tokens:8")     # `dp simulate`
    dp.evaluate_judge(cache, "default", "jaccard", truncate="tokens:8")        # `dp judge eval`
    dp.draw_figures(cache, "figs")                   # `dp figures`

Every call takes an open `Cache` and returns plain data: a pandas DataFrame where
a command prints a table, a dict where it prints one record. Settings are the commands'
own, with the same defaults and the same one-line `DPError` for bad values. This module only
wires the stages together; it computes nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dp.cache.store import DEFAULT_CACHE, Cache


def open_cache(path: str | Path = DEFAULT_CACHE, write: bool = False) -> Cache:
    """Open a `dp` cache file (read-only unless `write`). Use it as a context manager or `.close()` it."""
    return Cache(path, write=write)


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


def runs(cache: Cache):
    """One row per run with `dp cache info`'s statistics (problems, traces, tokens, accuracy, ...)."""
    from dp.cache.info import run_stats, token_bytes_by_run

    bytes_per_token = token_bytes_by_run(cache)
    return _frame([run_stats(cache, r, bytes_per_token) for r in cache.runs()])


def traces(cache: Cache, run: str):
    """The run's traces as an Arrow table, one row per trace (`.to_pandas()` for a DataFrame)."""
    from dp.cache.export import run_table

    return run_table(cache, run)


def replay_results(cache: Cache, settings):
    """`dp simulate`'s results for a `SimSettings`: one `PolicyResult` per policy and grid point
    (the points are stored in the cache when it is open for writing)."""
    from dp.simulate.replay.sweep import simulate as run

    return run(cache, settings, store=cache.write)


def replay(cache: Cache, run: str, policies: Sequence[str] = ("deepprune", "cons"), *,
             judge: str = "features", truncate: str = "words:25", orders: int = 50, order: str = "random",
             seed: int = 0, sweep: Sequence[str] = (), limit: int | None = None, crossfit: int | None = None,
             **settings):
    """Replay `policies` on `run` over `orders` seeded arrival orders; one row per policy and grid
    point, with the matched random controls' columns (`matched_*`, `token_matched_*`) beside
    DeepPrune's. `settings` are the policies' own (tau=0.5, K2=20, keep=20, window=5, ...)."""
    from dp.simulate.replay.sweep import SimSettings

    s = SimSettings(run=run, policies=tuple(policies), judge=judge, truncate=truncate, orders=orders,
                    order_kind=order, seed=seed, params=settings or None, sweep=tuple(sweep), limit=limit,
                    crossfit=crossfit)
    return _frame([{**r.summary(), "run": run} for r in replay_results(cache, s)])


def evaluate_judge(cache: Cache, run: str, judge: str = "features", *, truncate: str = "words:25",
                   max_pairs: int | None = None, crossfit: int | None = None, seed: int = 0) -> dict:
    """AUROC and TNR at FNR = 0.2 of `judge` on `run`'s same-problem pairs (`dp judge eval`)."""
    from dp.judge.train import evaluate_judge as evaluate

    return evaluate(cache, run, judge, truncate, max_pairs=max_pairs, seed=seed,
                    store_scores=cache.write, crossfit=crossfit)


def draw_figures(cache: Cache, out_dir: str | Path, runs: Sequence[str] | None = None, **settings):
    """Draw every figure of `runs` (default: all) into `out_dir`; returns the report (`dp figures`).
    `settings` are `FigureSettings` fields (judge, truncate, orders, ...)."""
    from dp.figures import FigureSettings, make_figures

    return make_figures(cache, list(runs) if runs else None, out_dir, FigureSettings(**settings))
