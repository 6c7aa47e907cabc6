"""The Cache: open a dp DuckDB file, write runs and traces in bulk, read them back as numpy.

One writer at a time (DuckDB's file lock); readers open read-only. A process
holds the lock only while its `Cache` is open, so long jobs open a writer per
batch and readers get in between; a caller that meets the lock retries for
`wait` seconds (`dp.cache.lock`) before its one-line error. A writer
that creates the file and then fails (an exception leaves the `with` block)
removes the file again: a failed command leaves no new cache behind. Each call to
`write_traces` is one transaction: a trace is either fully in the file (its row,
all its tokens, its answer class) or not at all. Answer extraction and the
grouping of a problem's answers into equivalence classes happen here, once, with
`dp.answers`; every later stage reads the stored classes.

It does not sample, judge or simulate anything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from dp import answers as ans
from dp.cache.classes import AnswerClasses
from dp.cache.lock import connect
from dp.cache.reads import TraceReads
from dp.cache.records import ProblemTraces, RunInfo, check_run_name, problem_from_row  # noqa: F401 - re-exported
from dp.cache.schema import check_schema, ensure_schema
from dp.cache.scores import JudgeScores
from dp.cache.tables import FLOAT_DECIMALS, stored_float, stored_scalar, token_table, topk_table  # noqa: F401 - re-exported
from dp.errors import DPError
from dp.provenance import stamp
from dp.types import Problem, TraceRecord

DEFAULT_CACHE = "dp.duckdb"


class Cache(TraceReads, JudgeScores, AnswerClasses):
    """A dp trace cache file. Use as a context manager; `write=True` takes the writer lock."""

    def __init__(self, path: str | Path = DEFAULT_CACHE, write: bool = False, wait: float | None = None):
        self.path = str(path)
        self.write = write
        self._tx_depth = 0
        if not write and not Path(self.path).exists():
            raise DPError(f"no cache at {self.path}")
        if Path(self.path).is_dir():
            raise DPError(f"{self.path} is a directory, not a cache file")
        new_dir = None
        if write and not Path(self.path).parent.exists():
            new_dir = next(p for p in [Path(self.path).parent, *Path(self.path).parent.parents] if p.parent.exists())
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.created = write and not Path(self.path).exists()
        self._new_dir = new_dir
        try:
            self.con = connect(self.path, read_only=not write, wait=wait)
        except DPError:
            self._remove_if_created()
            raise
        try:
            if write:
                ensure_schema(self.con, self.path)
            elif check_schema(self.con, self.path) == 0:
                raise DPError(f"{self.path} is an empty DuckDB file, not a dp trace cache")
        except BaseException:
            self.con.close()
            self._remove_if_created()
            raise

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is not None:
            self._remove_if_created()

    def close(self) -> None:
        self.con.close()

    def _remove_if_created(self) -> None:
        """Undo the creation of the file (and of its folder) by this writer."""
        if not getattr(self, "created", False):
            return
        for p in (Path(self.path), Path(self.path + ".wal")):
            p.unlink(missing_ok=True)
        if self._new_dir is not None:
            import shutil

            shutil.rmtree(self._new_dir, ignore_errors=True)

    # ------------------------------------------------------------------ runs
    def runs(self) -> list[str]:
        return [r[0] for r in self.con.execute("SELECT run FROM runs ORDER BY created_at, run").fetchall()]

    def runs_with_traces(self) -> list[str]:
        """Names of the runs that hold at least one trace."""
        return [r for (r,) in self.con.execute("SELECT DISTINCT run FROM traces ORDER BY run").fetchall()]

    def has_confidence(self, run: str) -> bool:
        """Whether any token of the run has a stored confidence (DeepConf's input)."""
        return bool(self.con.execute(
            "SELECT count(*) > 0 FROM (SELECT 1 FROM tokens JOIN traces USING (trace_id) "
            "WHERE run = ? AND confidence IS NOT NULL LIMIT 1)", [run]).fetchall()[0][0])

    def has_run(self, run: str) -> bool:
        return self.con.execute("SELECT count(*) FROM runs WHERE run = ?", [run]).fetchall()[0][0] > 0

    def run_info(self, run: str) -> dict:
        cur = self.con.execute("SELECT * FROM runs WHERE run = ?", [run])
        rows = cur.fetchall()
        row = rows[0] if rows else None
        if row is None:
            known = ", ".join(self.runs()) or "none"
            raise DPError(f"no run '{run}' in {self.path} (runs: {known})")
        info = dict(zip([d[0] for d in cur.description], row, strict=True))
        for key in ("sampling", "settings"):
            info[key] = json.loads(info[key]) if info[key] else {}
        info["created_at"] = str(info["created_at"])
        return info

    def check_resumable(self, info: RunInfo) -> None:
        """Raise unless the stored run `info.run` has the same identity as `info` (reads only)."""
        old = self.run_info(info.run)
        stored = RunInfo(**{f.name: old[f.name] for f in dataclasses.fields(RunInfo)})
        if stored.identity() != info.identity():
            diff = [k for k, v in info.identity().items() if stored.identity()[k] != v]
            raise DPError(
                f"run '{info.run}' exists with different settings ({', '.join(diff)}); "
                "use another --run or --replace"
            )

    def run_totals(self, run: str) -> tuple[int, int]:
        """(traces, tokens) stored for `run`."""
        row = self.con.execute("SELECT count(*), coalesce(sum(n_tokens), 0) FROM traces WHERE run = ?",
                               [run]).fetchall()[0]
        return int(row[0]), int(row[1])

    def create_run(self, info: RunInfo, replace: bool = False, resume: bool = False) -> None:
        """Register a run. An existing run is an error unless `replace` (delete it first)
        or `resume` with identical settings (a resumed generation)."""
        self.need_write()
        if self.has_run(info.run):
            if replace:
                self.delete_run(info.run)
            elif resume:
                self.check_resumable(info)
                return
            else:
                raise DPError(f"run '{info.run}' already exists in {self.path}; use --replace to overwrite it")
        st = stamp()
        self.con.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [info.run, info.model, info.engine, info.tokenizer, json.dumps(info.sampling),
             info.prompt_template, info.source, info.dataset, info.n, info.seed,
             st["dp_version"], st["git_hash"], st["created_at"], json.dumps(info.settings)],
        )

    def update_run_settings(self, run: str, settings: dict) -> None:
        """Replace the settings JSON of a run (e.g. a live run's measured results)."""
        self.need_write()
        self.run_info(run)
        self.con.execute("UPDATE runs SET settings = ? WHERE run = ?", [json.dumps(settings), run])

    def delete_run(self, run: str) -> None:
        self.need_write()
        with self.transaction():
            ids = "SELECT trace_id FROM traces WHERE run = ?"
            self.con.execute(f"DELETE FROM tokens WHERE trace_id IN ({ids})", [run])
            self.con.execute(f"DELETE FROM topk WHERE trace_id IN ({ids})", [run])
            self.con.execute(
                f"DELETE FROM judge_scores WHERE trace_a IN ({ids}) OR trace_b IN ({ids})", [run, run]
            )
            for table in ("traces", "problems", "sim_points", "live_traces", "problem_settings", "runs"):
                self.con.execute(f"DELETE FROM {table} WHERE run = ?", [run])

    # -------------------------------------------------------------- problems
    def add_problems(self, run: str, problems: Iterable[Problem]) -> None:
        self.need_write()
        problems = list(problems)
        if not problems:
            return
        self.insert_arrow("problems", pa.table({
            "run": pa.array([run] * len(problems), pa.string()),
            "problem_id": pa.array([p.problem_id for p in problems], pa.string()),
            "dataset": pa.array([p.dataset for p in problems], pa.string()),
            "question": pa.array([p.question for p in problems], pa.string()),
            "gold": pa.array([p.gold for p in problems], pa.string()),
            "kind": pa.array([p.kind.value for p in problems], pa.string()),
            "choices": pa.array([json.dumps(list(p.choices)) for p in problems], pa.string()),
        }), or_ignore=True)

    def problems(self, run: str, only: Sequence[str] | None = None) -> list[Problem]:
        """The run's problems (`only`: just these ids)."""
        rows = self.con.execute(
            "SELECT problem_id, dataset, question, gold, kind, choices FROM problems "
            "WHERE run = ? AND (? IS NULL OR list_contains(?, problem_id)) ORDER BY problem_id",
            [run, None if only is None else list(only), None if only is None else list(only)],
        ).fetchall()
        return [problem_from_row(r) for r in rows]

    # ---------------------------------------------------------------- traces
    def done_keys(self, run: str) -> set[tuple[str, int]]:
        """(problem_id, index) of every trace already stored for `run`."""
        rows = self.con.execute("SELECT problem_id, idx FROM traces WHERE run = ?", [run]).fetchall()
        return {(p, int(i)) for p, i in rows}

    def write_traces(self, run: str, records: Sequence[TraceRecord],
                     classes: dict[str, np.ndarray] | None = None) -> list[int]:
        """Store traces (all or none) and re-class the answers of the problems they touch.

        Returns the new trace ids. The problems must already be registered. `classes`:
        answer classes already computed for some problems (see `assign_classes`).
        """
        self.need_write()
        if not records:
            return []
        problems = {p.problem_id: p for p in self.problems(run, sorted({r.problem_id for r in records}))}
        missing = sorted({r.problem_id for r in records} - problems.keys())
        if missing:
            raise DPError(f"run '{run}' has no problem {missing[0]!r}; add problems before traces")
        with self.transaction():
            start = self.con.execute("SELECT coalesce(max(trace_id), 0) + 1 FROM traces").fetchall()[0][0]
            ids = list(range(start, start + len(records)))
            answers = [
                r.answer if r.answer_given else ans.extract_answer(r.text, problems[r.problem_id].kind)
                for r in records
            ]
            self.insert_arrow("traces", pa.table({
                "trace_id": pa.array(ids, pa.int32()),
                "run": pa.array([run] * len(records), pa.string()),
                "problem_id": pa.array([r.problem_id for r in records], pa.string()),
                "idx": pa.array([int(r.index) for r in records], pa.int32()),
                "seed": pa.array([r.seed for r in records], pa.int64()),
                "n_tokens": pa.array([r.n_tokens for r in records], pa.int32()),
                "text": pa.array([r.text for r in records], pa.string()),
                "answer": pa.array(answers, pa.string()),
                "answer_class": pa.nulls(len(records), pa.int32()),
                "correct": pa.nulls(len(records), pa.bool_()),
                "finish_reason": pa.array([r.finish_reason.value for r in records], pa.string()),
            }))
            self.insert_arrow("tokens", token_table(ids, records))
            topk = topk_table(ids, records)
            if topk is not None:
                self.insert_arrow("topk", topk)
            self.assign_classes(run, sorted({r.problem_id for r in records}), classes)
        return ids

    # --------------------------------------------------------------- helpers
    def transaction(self):
        return _Transaction(self)

    def need_write(self) -> None:
        if not self.write:
            raise DPError(f"cache {self.path} was opened read-only")

    def insert_arrow(self, table: str, data: pa.Table, create: bool = False,
                      temp: bool = False, or_ignore: bool = False) -> None:
        self.con.register("_arrow_in", data)
        try:
            if create:
                kind = "TEMP TABLE" if temp else "TABLE"
                self.con.execute(f"CREATE OR REPLACE {kind} {table} AS SELECT * FROM _arrow_in")
            else:
                verb = "INSERT OR IGNORE" if or_ignore else "INSERT"
                self.con.execute(f"{verb} INTO {table} SELECT * FROM _arrow_in")
        finally:
            self.con.unregister("_arrow_in")


class _Transaction:
    """BEGIN ... COMMIT, ROLLBACK on any exception; a no-op when nested inside another."""

    def __init__(self, cache: Cache):
        self.cache = cache

    def __enter__(self):
        if self.cache._tx_depth == 0:
            self.cache.con.execute("BEGIN TRANSACTION")
        self.cache._tx_depth += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        self.cache._tx_depth -= 1
        if self.cache._tx_depth == 0:
            self.cache.con.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
