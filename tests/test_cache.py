"""The trace cache: round trips, atomic writes, schema checks, locks, reads as arrays."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import numpy as np
import pytest

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.types import AnswerKind, FinishReason, Problem, TraceRecord


def _rec(pid, idx, text, with_lp=True):
    words = text.split(" ")
    ends = np.cumsum([len(w) + 1 for w in words]) - 1
    ends[-1] = len(text)
    n = len(words)
    return TraceRecord(problem_id=pid, index=idx, text=text, token_ids=np.arange(n, dtype=np.int32) + 7,
                       offsets=ends.astype(np.int32), seed=idx + 100, finish_reason=FinishReason.STOP,
                       logprobs=np.full(n, -0.25, np.float32) if with_lp else None,
                       confidence=np.linspace(1, 2, n).astype(np.float32) if with_lp else None)


def _new(path, run="r"):
    c = Cache(path, write=True)
    c.create_run(RunInfo(run=run, model="m", engine="test", tokenizer="t", source="test", dataset="d", n=3))
    c.add_problems(run, [Problem("d", "p1", "1+1?", "2", AnswerKind.NUMBER),
                         Problem("d", "p2", "2+2?", "4", AnswerKind.NUMBER)])
    return c


def test_round_trip_arrays_classes_and_prefix(tmp_path):
    path = tmp_path / "c.duckdb"
    with _new(path) as c:
        c.write_traces("r", [_rec("p1", 0, "so it is \\boxed{2}"), _rec("p1", 1, "maybe \\boxed{3}"),
                             _rec("p1", 2, "it is 2.0 \\boxed{2.0}"), _rec("p2", 0, "no answer here")])
    with Cache(path) as c:
        probs = c.load_run("r")
        p1 = probs[0]
        assert p1.problem.problem_id == "p1" and p1.n == 3
        assert p1.answers == ["2", "3", "2.0"]
        assert p1.classes.tolist() == [0, 1, 0]  # 2 and 2.0 are one answer
        assert p1.correct.tolist() == [True, False, True]
        assert p1.lengths.tolist() == [4, 2, 4]
        assert probs[1].classes.tolist() == [-1] and probs[1].correct.tolist() == [False]
        ids = c.token_arrays(p1.trace_ids, "token_id")
        assert [a.tolist() for a in ids] == [[7, 8, 9, 10], [7, 8], [7, 8, 9, 10]]
        conf = c.token_arrays(p1.trace_ids[:1], "confidence")[0]
        # stored rounded to 1e-3 (FLOAT_DECIMALS), as float32: 1.3333334 -> 1.333
        assert conf.tolist() == np.float32([1.0, 1.333, 1.667, 2.0]).tolist()
        assert c.token_arrays(p1.trace_ids[:1], "logprob")[0].tolist() == np.float32([-0.25] * 4).tolist()
        assert c.prefix_texts([p1.trace_ids[0]], [2]) == ["so it"]
        assert c.prefix_texts([p1.trace_ids[0]], [4]) == ["so it is \\boxed{2}"]


def test_missing_logprobs_stay_missing(tmp_path):
    path = tmp_path / "c.duckdb"
    with _new(path) as c:
        c.write_traces("r", [_rec("p1", 0, "a b \\boxed{2}", with_lp=False)])
        lp = c.token_arrays(c.load_run("r")[0].trace_ids, "logprob")[0]
        assert lp.shape == (3,) and np.isnan(lp).all()


def test_failed_write_leaves_no_half_trace(tmp_path, monkeypatch):
    import dp.cache.store as store

    path = tmp_path / "c.duckdb"
    with _new(path) as c:
        c.write_traces("r", [_rec("p1", 0, "x \\boxed{2}")])

        def boom(*a, **k):
            raise RuntimeError("disk full")

        monkeypatch.setattr(store, "topk_table", boom)  # fails after the trace rows went in
        with pytest.raises(RuntimeError):
            c.write_traces("r", [_rec("p1", 1, "y \\boxed{3}"), _rec("p2", 0, "z \\boxed{4}")])
        assert c.con.execute("SELECT count(*) FROM traces").fetchall()[0][0] == 1
        assert c.con.execute("SELECT count(*) FROM tokens").fetchall()[0][0] == 2
        assert c.done_keys("r") == {("p1", 0)}


def test_not_a_cache_and_wrong_version(tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE t (x INT)")
    con.close()
    with pytest.raises(DPError, match="not a dp trace cache"):
        Cache(other)
    text = tmp_path / "text.duckdb"
    text.write_text("hello")
    with pytest.raises(DPError):
        Cache(text)
    path = tmp_path / "c.duckdb"
    _new(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE dp_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(DPError, match="schema version 99"):
        Cache(path)
    with pytest.raises(DPError, match="no cache"):
        Cache(tmp_path / "absent.duckdb")


def test_locked_by_another_writer(tmp_path):
    path = tmp_path / "c.duckdb"
    _new(path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(DPError, match="locked"):
            Cache(path, write=True)
    finally:
        holder.kill()


def test_run_exists_and_resume_rules(tmp_path):
    path = tmp_path / "c.duckdb"
    with _new(path) as c:
        info = RunInfo(run="r", model="m", engine="test", tokenizer="t", source="test", dataset="d", n=3)
        with pytest.raises(DPError, match="already exists"):
            c.create_run(info)
        c.create_run(info, resume=True)  # same settings: fine
        with pytest.raises(DPError, match="different settings"):
            c.create_run(RunInfo(**{**info.__dict__, "n": 4}), resume=True)
        c.create_run(RunInfo(**{**info.__dict__, "n": 4}), replace=True)
        assert c.run_info("r")["n"] == 4 and c.problems("r") == []
