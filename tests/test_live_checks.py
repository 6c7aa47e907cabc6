"""`dp live` on a fake engine (fast): settings that cannot prune and a judge trained on the run's
questions are warned about on stderr and in the output, as `dp simulate` does."""

from __future__ import annotations

import asyncio

import pytest

import dp.generate.stream as stream_module
import dp.simulate.live.run as live_run
from dp.cache.store import Cache, RunInfo
from dp.generate.sampling import SamplingSpec
from dp.generate.stream import Stream
from dp.judge.base import load_judge
from dp.judge.insample import problem_digest
from dp.simulate.live.checks import prune_warnings, setting_error
from dp.simulate.live.run import LiveSettings, run_lives
from dp.simulate.policies.registry import make_policy
from dp.types import Problem
from tests.fake_engine import FakeEngine

QUESTIONS = ["What is 2 + 3?", "What is 1 + 4?"]


@pytest.fixture
def reference(tmp_path, monkeypatch):
    """A generated-like run 'ref' (2 problems x 4 traces of the fake engine) and dp live on that engine."""
    engine = FakeEngine(answers=("5",), repeats=(1, 2))
    spec = SamplingSpec(n=4, max_tokens=64, seed=0)
    path = tmp_path / "c.duckdb"

    async def traces(pid):
        out = []
        for i in range(4):
            s = Stream(f"{pid}-{i}")
            async for _ in engine.stream(s, [], spec, 100 + i):
                pass
            out.append(engine.record(s, pid, i, 100 + i, spec))
        return out

    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run="ref", model="smollm2-135m", engine="fake", tokenizer="smollm2-135m",
                             source="generate", dataset="t", n=4, seed=0, sampling=spec.to_dict()))
        c.add_problems("ref", [Problem("t", f"p{i}", q, "5") for i, q in enumerate(QUESTIONS)])
        for i in range(len(QUESTIONS)):
            c.write_traces("ref", asyncio.run(traces(f"p{i}")))
    monkeypatch.setattr(stream_module, "StreamEngine", lambda *a, **k: FakeEngine(answers=("5",), repeats=(1, 2)))
    return path


def test_live_warns_about_settings_that_cannot_prune(reference, capsys):
    with Cache(reference, write=True) as c:
        outs = run_lives(c, [
            LiveSettings(reference_run="ref", live_run="a", policy="deepprune", params={"K2": 4}, judge="jaccard",
                         truncate="tokens:8"),
            LiveSettings(reference_run="ref", live_run="b", policy="deepconf-low", params={"warmup": 4}),
            LiveSettings(reference_run="ref", live_run="c", policy="deepprune", params={"K2": 1}, judge="jaccard",
                         truncate="tokens:40"),
        ], progress=False)
    err = capsys.readouterr().err
    assert any("N = 4 <= K2 = 4" in w for w in outs[0]["warnings"]) and "warning: deepprune: N = 4 <= K2 = 4" in err
    assert any("warm-up 4 >= N = 4" in w for w in outs[1]["warnings"]) and "warm-up 4 >= N = 4" in err
    assert any("prefix_share" in w for w in outs[2]["warnings"]), outs[2]["warnings"]  # measured after the run
    assert outs[0]["judge_in_sample"] is False


def test_live_warns_when_the_judge_saw_the_runs_questions(reference, capsys, monkeypatch):
    judge = load_judge("jaccard")
    judge.meta = {"trained_on": {"runs": ["other"], "problem_digests": [problem_digest(QUESTIONS[1])]}}
    monkeypatch.setattr(live_run, "load_judge", lambda name, seed=0: judge)
    with Cache(reference, write=True) as c:
        out = run_lives(c, [LiveSettings(reference_run="ref", live_run="a", policy="deepprune", params={"K2": 2},
                                         judge="jaccard", truncate="tokens:8")], progress=False)[0]
    assert out["judge_in_sample"] is True
    assert any("was trained on problems of run 'ref'" in w for w in out["warnings"])
    assert "in-sample" in capsys.readouterr().err


def test_prune_warnings_name_each_case_and_stay_quiet_otherwise():
    from dp.judge.truncation import TruncationRule

    rule = TruncationRule.parse("tokens:8")
    assert prune_warnings(make_policy("deepprune", K2=2), 8, 64, rule) == []
    assert prune_warnings(make_policy("deepconf-low", warmup=4, conf_window=32), 8, 64, rule) == []
    assert prune_warnings(make_policy("adaptive", wave=1), 8, 64, rule) == []
    assert prune_warnings(make_policy("slimsc", every=8), 8, 64, rule) == []
    assert "every 64 >= max_tokens 64" in prune_warnings(make_policy("slimsc", every=64), 8, 64, rule)[0]
    assert "wave 8 >= N = 8" in prune_warnings(make_policy("adaptive", wave=8), 8, 64, rule)[0]
    assert "covers the whole trace" in prune_warnings(make_policy("random", keep=2), 8, 8, rule)[0]
    assert prune_warnings(make_policy("cons"), 8, 8, rule) == []


def test_setting_errors_are_plain_words():
    assert setting_error("K", 64, 64, 4096) is None and setting_error("tau", 0.3, 64, 4096) is None
    assert "must be <= 64" in setting_error("K", 65, 64, 4096)
    assert "finite" in setting_error("tau", float("nan"), 64, 4096)
    assert "must be a number" in setting_error("tau", "x", 64, 4096)
    assert "must be an integer" in setting_error("warmup", True, 64, 4096)
    assert "unknown setting" in setting_error("percentile", 10, 64, 4096)
