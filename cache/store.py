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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from dp import answers as ans
from dp.cache.lock import connect
from dp.cache.schema import check_schema, ensure_schema
from dp.errors import DPError
from dp.provenance import stamp
from dp.types import AnswerKind, Problem, TraceRecord

DEFAULT_CACHE = "dp.duckdb"
FLOAT_DECIMALS = 3  # log-probs and confidences are stored rounded to 1e-3 (see README): the one rounding


def check_run_name(run: str) -> str:
    """A run name: any non-blank text (it reaches SQL only as a bound parameter)."""
    if not isinstance(run, str) or not run.strip():
        raise DPError("run names must not be empty")
    return run


@dataclass(frozen=True)
class RunInfo:
    """What made a run; stored verbatim in the `runs` table."""

    run: str
    model: str
    engine: str
    tokenizer: str
    source: str
    dataset: str
    n: int
    seed: int | None = None
    sampling: dict = field(default_factory=dict)
    prompt_template: str = ""
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_run_name(self.run)

    def identity(self) -> dict:
        """The fields that must agree when a run is resumed."""
        return {
            "model": self.model, "engine": self.engine.split(" ")[0], "tokenizer": self.tokenizer,
            "dataset": self.dataset, "n": self.n, "seed": self.seed,
            "sampling": self.sampling, "prompt_template": self.prompt_template,
        }


@dataclass
class ProblemTraces:
    """All traces of one problem in one run, as arrays ordered by trace index."""

    problem: Problem
    trace_ids: np.ndarray  # (n,) int64, cache-wide trace ids
    index: np.ndarray  # (n,) int32, 0..N-1
    lengths: np.ndarray  # (n,) int32, tokens per trace
    answers: list[str | None]  # (n,) extracted answers
    classes: np.ndarray  # (n,) int32 answer class, -1 = no answer
    correct: np.ndarray  # (n,) bool, the trace's class is equivalent to gold
    finish: list[str]  # (n,) finish reasons
    seeds: np.ndarray  # (n,) int64, -1 where unknown

    @property
    def n(self) -> int:
        return int(len(self.trace_ids))

    @property
    def correct_classes(self) -> set[int]:
        """Classes whose answer is equivalent to the gold answer."""
        return {int(c) for c in np.unique(self.classes[self.correct]) if c >= 0}


def _problem_from_row(row: tuple) -> Problem:
    pid, dataset, question, gold, kind, choices = row
    return Problem(
        dataset=dataset, problem_id=pid, question=question, gold=gold,
        kind=AnswerKind(kind), choices=tuple(json.loads(choices)) if choices else (),
    )


class Cache:
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
            for table in ("traces", "problems", "sim_points", "live_traces", "runs"):
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

    def problems(self, run: str) -> list[Problem]:
        rows = self.con.execute(
            "SELECT problem_id, dataset, question, gold, kind, choices FROM problems "
            "WHERE run = ? ORDER BY problem_id", [run],
        ).fetchall()
        return [_problem_from_row(r) for r in rows]

    # ---------------------------------------------------------------- traces
    def done_keys(self, run: str) -> set[tuple[str, int]]:
        """(problem_id, index) of every trace already stored for `run`."""
        rows = self.con.execute("SELECT problem_id, idx FROM traces WHERE run = ?", [run]).fetchall()
        return {(p, int(i)) for p, i in rows}

    def write_traces(self, run: str, records: Sequence[TraceRecord]) -> list[int]:
        """Store traces (all or none) and re-class the answers of the problems they touch.

        Returns the new trace ids. The problems must already be registered.
        """
        self.need_write()
        if not records:
            return []
        problems = {p.problem_id: p for p in self.problems(run)}
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
            self.insert_arrow("tokens", _token_table(ids, records))
            topk = _topk_table(ids, records)
            if topk is not None:
                self.insert_arrow("topk", topk)
            self.assign_classes(run, sorted({r.problem_id for r in records}))
        return ids

    def assign_classes(self, run: str, problem_ids: Sequence[str]) -> None:
        """Recompute answer classes and correctness of the given problems, in index order."""
        problems = {p.problem_id: p for p in self.problems(run)}
        updates = []
        for pid in problem_ids:
            p = problems[pid]
            rows = self.con.execute(
                "SELECT trace_id, answer FROM traces WHERE run = ? AND problem_id = ? ORDER BY idx",
                [run, pid],
            ).fetchall()
            answers = [a for _, a in rows]
            classes = ans.group_answers(answers, p.kind)
            class_ok: dict[int, bool | None] = {}
            for c, a in zip(classes, answers, strict=True):
                if int(c) not in class_ok:
                    class_ok[int(c)] = False if c < 0 else ans.is_correct(a, p.gold, p.kind)
            updates += [(int(c), class_ok[int(c)], tid) for (tid, _), c in zip(rows, classes, strict=True)]
        if updates:
            self.insert_arrow("_cls_updates", pa.table({
                "cls": pa.array([u[0] for u in updates], pa.int32()),
                "ok": pa.array([u[1] for u in updates], pa.bool_()),
                "tid": pa.array([u[2] for u in updates], pa.int32()),
            }), create=True)
            self.con.execute(
                "UPDATE traces SET answer_class = u.cls, correct = u.ok FROM _cls_updates u "
                "WHERE traces.trace_id = u.tid"
            )
            self.con.execute("DROP TABLE _cls_updates")

    def load_run(self, run: str) -> list[ProblemTraces]:
        """Every problem of a run with its traces as arrays (problems without traces are left out)."""
        self.run_info(run)  # raises a clear error for an unknown run
        problems = {p.problem_id: p for p in self.problems(run)}
        tbl = self.con.sql(
            "SELECT problem_id, trace_id, idx, n_tokens, answer, answer_class, correct, finish_reason, seed "
            "FROM traces WHERE run = ? ORDER BY problem_id, idx", params=[run],
        ).to_arrow_table()
        cols = {name: tbl.column(name).to_pylist() for name in tbl.column_names}
        out: list[ProblemTraces] = []
        pids = np.array(cols["problem_id"], dtype=object)
        if len(pids) == 0:
            return out
        bounds = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1], True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sl = slice(int(a), int(b))
            out.append(ProblemTraces(
                problem=problems[pids[a]],
                trace_ids=np.array(cols["trace_id"][sl], dtype=np.int64),
                index=np.array(cols["idx"][sl], dtype=np.int32),
                lengths=np.array(cols["n_tokens"][sl], dtype=np.int32),
                answers=cols["answer"][sl],
                classes=np.array([-1 if c is None else c for c in cols["answer_class"][sl]], dtype=np.int32),
                correct=np.array([bool(c) for c in cols["correct"][sl]], dtype=bool),
                finish=cols["finish_reason"][sl],
                seeds=np.array([-1 if s is None else s for s in cols["seed"][sl]], dtype=np.int64),
            ))
        return out

    def token_arrays(self, trace_ids: Sequence[int], column: str = "token_id") -> list[np.ndarray]:
        """Per-token values of `column` for each trace id, in the order given.

        Missing values (imported traces have no log-probs) come back as NaN for
        float columns; callers decide what missing means.
        """
        if column not in ("token_id", "logprob", "confidence", "end_offset"):
            raise DPError(f"unknown token column {column!r}")
        ids = np.asarray(trace_ids, dtype=np.int64)
        if ids.size == 0:
            return []
        self.insert_arrow("_want", pa.table({"tid": pa.array(ids, pa.int64())}), create=True, temp=True)
        tbl = self.con.sql(
            f"SELECT t.trace_id, t.{column} AS v FROM tokens t JOIN _want w ON t.trace_id = w.tid "
            "ORDER BY t.trace_id, t.pos"
        ).to_arrow_table()
        self.con.execute("DROP TABLE _want")
        tid = tbl.column("trace_id").to_numpy()
        vals = tbl.column("v").to_numpy(zero_copy_only=False)
        if column in ("logprob", "confidence"):
            vals = np.asarray(vals, dtype=np.float32)
        starts = np.searchsorted(tid, ids)
        ends = np.searchsorted(tid, ids, side="right")
        return [vals[s:e] for s, e in zip(starts, ends, strict=True)]

    def texts(self, trace_ids: Sequence[int]) -> list[str]:
        """Full texts of traces, in the order given."""
        ids = [int(t) for t in trace_ids]
        rows = dict(self.con.execute(
            "SELECT trace_id, text FROM traces WHERE trace_id IN (SELECT unnest(?))", [ids]
        ).fetchall())
        return [rows[t] for t in ids]

    def prefix_texts(self, trace_ids: Sequence[int], n_tokens: Sequence[int]) -> list[str]:
        """The text of each trace up to and including its first `n_tokens` tokens (from the offsets)."""
        texts = self.texts(trace_ids)
        offsets = self.token_arrays(trace_ids, "end_offset")
        out = []
        for text, off, k in zip(texts, offsets, n_tokens, strict=True):
            k = int(min(k, len(off)))
            out.append(text[: int(off[k - 1])] if k > 0 else "")
        return out

    # ---------------------------------------------------------------- scores
    def get_scores(self, judge: str, rule: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cached judge scores for pairs (a[i], b[i]) (order-insensitive); NaN where not cached."""
        lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
        if lo.size == 0:
            return np.zeros(0)
        self.insert_arrow("_pairs", pa.table({
            "i": pa.array(np.arange(lo.size), pa.int64()), "a": lo, "b": hi}), create=True, temp=True)
        rows = self.con.execute(
            "SELECT p.i, s.score FROM _pairs p JOIN judge_scores s "
            "ON s.trace_a = p.a AND s.trace_b = p.b WHERE s.judge = ? AND s.rule = ?", [judge, rule],
        ).fetchnumpy()
        self.con.execute("DROP TABLE _pairs")
        out = np.full(lo.size, np.nan)
        out[rows["i"].astype(np.int64)] = rows["score"]
        return out

    def put_scores(self, judge: str, rule: str, a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> None:
        self.need_write()
        lo, hi = np.minimum(a, b).astype(np.int32), np.maximum(a, b).astype(np.int32)
        tbl = pa.table({"judge": pa.array([judge] * lo.size), "rule": pa.array([rule] * lo.size),
                        "a": lo, "b": hi, "s": np.asarray(scores, dtype=np.float64)})
        with self.transaction():
            self.insert_arrow("judge_scores", tbl, or_ignore=True)

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


def stored_float(x) -> np.ndarray:
    """A float column as the cache stores it (rounded to FLOAT_DECIMALS, float32): the one rounding."""
    return np.round(np.asarray(x, dtype=np.float64), FLOAT_DECIMALS).astype(np.float32)


def _rounded(x: np.ndarray | None, n: int) -> pa.Array:
    if x is None:
        return pa.nulls(n, pa.float32())
    v = stored_float(x)
    return pa.array(v, pa.float32(), mask=~np.isfinite(v))


def _token_table(ids: Sequence[int], records: Sequence[TraceRecord]) -> pa.Table:
    """All tokens of many traces as one Arrow table (no per-token Python)."""
    lengths = np.array([r.n_tokens for r in records], dtype=np.int64)
    tid = np.repeat(np.asarray(ids, dtype=np.int32), lengths)
    pos = (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
    total = int(lengths.sum())

    def cat(name: str) -> pa.Array:
        parts = [getattr(r, name) for r in records]
        if all(p is None for p in parts):
            return pa.nulls(total, pa.float32())
        arr = np.concatenate([
            np.full(r.n_tokens, np.nan, dtype=np.float32) if p is None else np.asarray(p, np.float32)
            for r, p in zip(records, parts, strict=True)
        ]) if records else np.zeros(0, np.float32)
        return _rounded(arr, total)

    token_ids = np.concatenate([np.asarray(r.token_ids, np.int32) for r in records])
    offsets = np.concatenate([np.asarray(r.offsets, np.int32) for r in records])
    return pa.table({
        "trace_id": tid, "pos": pos, "token_id": token_ids,
        "logprob": cat("logprobs"), "confidence": cat("confidence"), "end_offset": offsets,
    })


def _topk_table(ids: Sequence[int], records: Sequence[TraceRecord]) -> pa.Table | None:
    keep = [(t, r) for t, r in zip(ids, records, strict=True) if r.topk_ids is not None]
    if not keep:
        return None
    tids, poss, ranks, toks, lps = [], [], [], [], []
    for t, r in keep:
        n, k = r.topk_ids.shape
        tids.append(np.full(n * k, t, np.int32))
        poss.append(np.repeat(np.arange(n, dtype=np.int32), k))
        ranks.append(np.tile(np.arange(k, dtype=np.int8), n))
        toks.append(np.asarray(r.topk_ids, np.int32).ravel())
        lps.append(np.asarray(r.topk_logprobs, np.float32).ravel())
    lp = np.concatenate(lps)
    return pa.table({"trace_id": np.concatenate(tids), "pos": np.concatenate(poss),
                     "rank": np.concatenate(ranks), "token_id": np.concatenate(toks),
                     "logprob": _rounded(lp, lp.size)})
