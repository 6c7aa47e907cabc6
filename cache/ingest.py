"""Write a streamed import into the cache: all runs in one transaction, or nothing.

`write_import` takes the runs' final `RunInfo`s from a callback (their trace counts
are known only once the stream is read), writes each batch of problems and traces
with the Cache's bulk writers as it arrives, and registers the runs at the end.
Any error rolls everything back; a cache file that the import itself created is
removed, so bad input leaves no file behind. `grading_agreement` compares dp's
grading with a correctness column recorded in the file (MathArena's `correct`).

It does not read files or tokenize; `dp.generate` does, and the CLI wires the two.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.types import Problem, TraceRecord

MEMORY_LIMIT = "1GB"  # DuckDB's buffer while importing: keeps peak memory flat with size


def write_import(cache_path: str | Path, runs: list[str],
                 batches: Iterable[tuple[str, list[Problem], list[TraceRecord]]],
                 infos: Callable[[], list[RunInfo]], replace: bool = False,
                 after: Callable[[Cache], None] | None = None) -> None:
    """Stream `batches` (run, new problems, traces) into the cache, then register `infos()`.

    `after(cache)` runs inside the same transaction once the runs exist (e.g. to
    store measured settings). Existing runs are an error unless `replace`.
    """
    path = Path(cache_path)
    created = not path.exists()
    try:
        with Cache(path, write=True) as cache:
            for run in runs:
                if cache.has_run(run) and not replace:
                    raise DPError(f"run '{run}' already exists in {path}; use --replace to overwrite it")
            cache.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            with cache.transaction():
                for run in runs:
                    if cache.has_run(run):
                        cache.delete_run(run)
                wrote = set()
                for run, problems, records in batches:
                    if problems:
                        cache.add_problems(run, problems)
                    cache.write_traces(run, records)
                    wrote.add(run)
                empty = [r for r in runs if r not in wrote]
                if empty:
                    raise DPError(f"no traces for run '{empty[0]}' in the file")
                for info in infos():
                    cache.create_run(info)
                if after is not None:
                    after(cache)
    except BaseException:
        if created:
            for p in (path, Path(f"{path}.wal")):
                if p.exists():
                    os.remove(p)
        raise


def grading_agreement(cache: Cache, run: str, theirs: dict[tuple[str, int], object]) -> dict:
    """How often dp's `correct` agrees with the file's own, over traces graded by both."""
    both = agree = 0
    for pt in cache.load_run(run):
        if pt.problem.gold is None:
            continue
        for idx, ok in zip(pt.index.tolist(), pt.correct.tolist(), strict=True):
            other = theirs.get((pt.problem.problem_id, idx))
            if other is None:
                continue
            both += 1
            agree += bool(other) == bool(ok)
    return {"compared": both, "agree": agree, "rate": (agree / both) if both else None}
