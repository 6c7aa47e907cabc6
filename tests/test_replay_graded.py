"""Accuracy is over problems with a known gold answer (method.md section 4): a run whose
problems have no gold (every `dp serve --record` run, a table imported without `gold`)
reports accuracy n/a, never 0, and gold on half the problems does not halve it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp.simulate.policies.basic import Consensus
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.replay.driver import replay
from tests.conftest import invoke
from tests.test_simulate import ctx_of


def _table_cache(tmp_path, gold_on: int, problems: int = 6):
    """A run of `problems` problems x 3 traces all answering 1; gold '1' on the first `gold_on`."""
    rows = [{"pid": f"p{i}", "q": f"question {i}", "g": "1" if i < gold_on else None,
             "t": f"Step {k}: so the answer is \\boxed{{1}}"} for i in range(problems) for k in range(3)]
    f = tmp_path / f"t{gold_on}.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / f"c{gold_on}.duckdb"
    r = invoke("import", f, "--format", "table", "--run", "r", "--cache", cache, "--tokenizer", "smollm2-135m",
               "--map", "problem_id=pid,question=q,text=t,gold=g")
    assert r.exit_code == 0, r.output
    return cache


def _simulate(cache, *args):
    r = invoke("simulate", "--cache", cache, "--run", "r", "--policy", "cons", "--policy", "deepprune",
               "--judge", "jaccard", "--truncate", "tokens:4", "--orders", "3", "--no-store", *args)
    assert r.exit_code == 0, r.output
    return r


def test_gold_on_half_the_problems_does_not_halve_accuracy(tmp_path):
    cache = _table_cache(tmp_path, gold_on=3)
    rows = {x["policy"]: x for x in json.loads(_simulate(cache, "--json").stdout)}
    assert rows["cons"]["accuracy"] == 1.0 and rows["cons"]["pass_rate"] == 1.0  # was 0.5 and 0.5
    assert rows["cons"]["graded_problems"] == 3 and rows["cons"]["problems"] == 6
    assert rows["deepprune"]["matched_accuracy"] == 1.0
    assert rows["cons"]["tokens"] == rows["cons"]["full_tokens"]  # tokens still count every problem
    out = _simulate(cache).stdout
    assert "6 problems (3 with a gold answer)" in out and "over the 3 problems with a gold answer" in out


def test_a_run_without_gold_prints_na_never_zero(tmp_path):
    cache = _table_cache(tmp_path, gold_on=0)
    rows = {x["policy"]: x for x in json.loads(_simulate(cache, "--json").stdout)}
    for row in rows.values():
        assert row["accuracy"] is None and row["pass_rate"] is None and row["accuracy_std"] is None
        assert row["graded_problems"] == 0 and row["tokens"] > 0
    assert rows["deepprune"]["matched_accuracy"] is None and rows["deepprune"]["matched_accuracy_diff"] is None
    out = _simulate(cache).stdout
    table = [ln for ln in out.splitlines() if ln.startswith(("cons", "deepprune"))]
    assert len(table) == 2 and all("n/a" in ln and "0.0000" not in ln for ln in table), out
    notes = [ln for ln in out.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "no problem of this run has a gold answer" in notes[0]


def test_replay_counts_ungraded_problems_in_tokens_only():
    graded, served = ctx_of([0, 0, 1]), ctx_of([1, 1, 0], lengths=[50, 50, 50])
    graded.problem_id, served.problem_id, served.graded = "g", "s", False
    res = replay(Consensus(), [graded, served], orders=4, seed=0)
    assert res.accuracy == 1.0 and res.pass_rate == 1.0 and res.graded_problems == 1
    assert res.tokens == 300 + 150 and res.per_problem[1]["accuracy"] is None
    res = replay(DeepPrune(tau=0.5, K2=2), [served], orders=4, seed=0)
    assert res.accuracy is None and res.summary()["token_matched_accuracy_diff"] is None
    assert res.tokens > 0 and np.isfinite(res.tokens_std)


@pytest.mark.parametrize("gold_on", [0, 3])
def test_figures_never_draw_accuracy_0_for_ungraded_runs(tmp_path, gold_on):
    cache = _table_cache(tmp_path, gold_on=gold_on)
    out = tmp_path / "figs"
    r = invoke("figures", "--cache", cache, "--run", "r", "--out", out, "--judge", "jaccard", "--truncate",
               "tokens:4", "--orders", "2", "--taus", "0.3,0.6", "--token-ks", "4", "--word-ks", "5",
               "--max-pairs", "10", "--json")
    assert r.exit_code == 0, r.output
    figs = json.loads((out / "figures.json").read_text())["figures"]
    rows = [row for name in ("main_table", "threshold") for row in figs[name]["rows"]]
    assert rows and all(row["accuracy"] == (None if gold_on == 0 else 1.0) for row in rows)
    notes = " ".join(figs["main_table"]["notes"] + figs["threshold"]["notes"] + figs["pareto"]["notes"])
    assert ("no problem has a gold answer" in notes) == (gold_on == 0)
    if gold_on == 0:
        assert "| n/a |" in (out / "report.md").read_text()


def test_live_vote_and_live_accuracy_leave_ungraded_problems_out():
    from dp.simulate.live.problem import LiveTraces, graded_accuracy
    from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

    def votes(gold):
        lt = object.__new__(LiveTraces)  # the vote reads only the problem and N, never the engine
        lt.problem, lt.n = Problem(dataset="d", problem_id="p", question="q", gold=gold, kind=AnswerKind.NUMBER), 2
        recs = [TraceRecord(problem_id="p", index=i, text="so \\boxed{7}", token_ids=np.zeros(1, np.int64),
                            offsets=np.ones(1, np.int64), seed=i, finish_reason=FinishReason.STOP) for i in range(2)]
        return lt.vote(recs, np.array([True, True]), [0, 1], None), lt.vote(recs, np.zeros(2, bool), [0, 1], None)

    assert votes("7") == (("7", True), (None, False))
    assert votes(None) == (("7", None), (None, None))  # was ("7", False): a served question counted wrong
    assert graded_accuracy([True, None, None, False]) == (0.5, 2)  # the mean over all four gave 0.25
    assert graded_accuracy([None, None]) == (None, 0)


def test_dp_live_prints_na_for_a_run_without_gold(capsys):
    from dp.cli.live import _echo

    out = dict(live_run="x", policy="deepprune", mode="prune", problems=2, n=4, seed=0, truncate="tokens:8",
               live_tokens=10, live_seconds=1.0, max_problems_in_flight=1, max_traces_in_flight=64,
               peak_traces_in_flight=8, dtype="float32", judge_seconds=0.1,
               judge_pairs=3)
    _echo({**out, "live_accuracy": None, "graded_problems": 0}, "jaccard")  # was a TypeError on None
    _echo({**out, "live_accuracy": 0.5, "graded_problems": 2}, "jaccard")
    lines = capsys.readouterr().out.splitlines()
    assert "accuracy n/a (no problem has a gold answer)" in lines[1]
    assert "accuracy 0.500 over 2 problems with a gold answer" in lines[3]
