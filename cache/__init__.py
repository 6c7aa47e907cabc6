"""The trace cache: one DuckDB file holding runs, problems, traces token by token, judge scores,
simulator points and live decisions. `dp.cache.store.Cache` is the only writer; every SQL
statement of dp lives in this package (`store` and its mixins `reads`, `classes`, `scores`;
`points`, `live`, `info`, `export`, `merge`, `ingest`, `import_pipeline`, `offsets`, `schema`)."""

from dp.cache.store import Cache, ProblemTraces, RunInfo

__all__ = ["Cache", "ProblemTraces", "RunInfo"]
