"""Write a streamed import into the cache: complete runs, or nothing.

`write_import` takes the runs' final `RunInfo`s from a callback (their trace counts
are known only once the stream is read), writes each batch of problems and traces
with the Cache's bulk writers as it arrives (committed batch by batch under a
staging name, or all in one transaction), and registers the runs at the end. Any
error removes what was written; a cache file that the import itself created is
removed, so bad input leaves no file behind. `grading_agreement` compares dp's
grading with a correctness column recorded in the file (MathArena's `correct`).

It does not read files or tokenize; `dp.generate` does, and the CLI wires the two.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.types import Problem, TraceRecord

MEMORY_LIMIT = "1GB"  # DuckDB's buffer while importing: keeps peak memory flat with size


STAGING = "__importing__:"  # prefix of a run's name while its batches are committed one by one


def write_import(cache_path: str | Path, runs: list[str],
                 batches: Iterable[tuple[str, list[Problem], list[TraceRecord]]],
                 infos: Callable[[], list[RunInfo]], replace: bool = False,
                 after: Callable[[Cache], None] | None = None, atomic: bool = False) -> None:
    """Stream `batches` (run, new problems, traces) into the cache, then register `infos()`.

    `atomic`: everything in one DuckDB transaction. Otherwise (the default: DuckDB
    holds a large open transaction in memory) each batch is committed under a
    staging name, and one last transaction swaps the staged runs in for the old
    ones; an error deletes the staged rows, and leftovers of a killed import are
    deleted by the next import of the same run. Either way the old runs stay
    until the new ones are complete. `after(cache)` runs in that last
    transaction once the runs exist. Existing runs are an error unless `replace`.
    """
    path = Path(cache_path)
    created = not path.exists()
    stage = {r: r if atomic else STAGING + r for r in runs}
    try:
        with Cache(path, write=True) as cache:
            for run in runs:
                if cache.has_run(run) and not replace:
                    raise DPError(f"run '{run}' already exists in {path}; use --replace to overwrite it")
            cache.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            try:
                with cache.transaction() if atomic else contextlib.nullcontext():
                    for run in runs:
                        cache.delete_run(stage[run])
                    wrote = set()
                    for run, problems, records in batches:
                        with cache.transaction():
                            if problems:
                                cache.add_problems(stage[run], problems)
                            cache.write_traces(stage[run], records)
                        wrote.add(run)
                    empty = [r for r in runs if r not in wrote]
                    if empty:
                        raise DPError(f"no traces for run '{empty[0]}' in the file")
                    with cache.transaction():
                        for run in runs:
                            if stage[run] != run:
                                cache.delete_run(run)
                                _rename(cache, stage[run], run)
                        for info in infos():
                            cache.create_run(info)
                        if after is not None:
                            after(cache)
            except BaseException:
                if not atomic:
                    for run in runs:
                        cache.delete_run(stage[run])
                raise
    except BaseException:
        if created:
            for p in (path, Path(f"{path}.wal")):
                if p.exists():
                    os.remove(p)
        raise


def _rename(cache: Cache, old: str, new: str) -> None:
    """Move a staged run's problems and traces (not yet registered in `runs`) to its name."""
    for table in ("problems", "traces"):
        cache.con.execute(f"UPDATE {table} SET run = ? WHERE run = ?", [new, old])


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
