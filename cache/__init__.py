"""The trace cache: one DuckDB file holding runs, problems, traces token by token,
judge scores and simulator results. `dp.cache.store.Cache` is the only writer."""

from dp.cache.store import Cache, ProblemTraces, RunInfo

__all__ = ["Cache", "ProblemTraces", "RunInfo"]
