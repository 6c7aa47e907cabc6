"""bench_live's engine-step log: vLLM's stat-logger interface in, a window's summary out, by hand."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from engine_steps import StepLog, cost_model  # noqa: E402


def _step(logger, t, running, waiting, computed=0, cached=0, generated=0):
    sched = SimpleNamespace(num_running_reqs=running, num_waiting_reqs=waiting)
    it = SimpleNamespace(iteration_timestamp=t, num_generation_tokens=generated,
                         prompt_token_stats=SimpleNamespace(computed=computed, cached_tokens=cached))
    logger.record(sched, it)


def test_a_window_summary_by_hand():
    pytest.importorskip("vllm")
    log = StepLog()
    logger = log(None, 0)  # what vLLM does with a per-engine factory
    _step(logger, 99.0, 9, 9, generated=99)  # before the window: not counted
    _step(logger, 101.0, 2, 1, computed=20, cached=96)  # 1 s after the start (t0 = 100)
    _step(logger, 101.5, 4, 0, generated=2)  # 0.5 s
    _step(logger, 102.0, 0, 0, generated=4)  # 0.5 s; leaves the engine empty
    _step(logger, 105.0, 1, 0, computed=12, cached=96)  # 3 s after an empty engine: idle
    _step(logger, 105.5, 1, 0, generated=1)  # 0.5 s
    s = log.summary(100.0, 106.0)
    assert s["steps"] == 5 and s["seconds"] == 6.0
    assert s["idle_seconds"] == 3.0 and s["busy_seconds"] == 2.5
    assert s["running_mean"] == pytest.approx((2 * 1 + 4 * 0.5 + 0 * 0.5 + 1 * 0.5) / 2.5)
    assert s["waiting_mean"] == pytest.approx(1 * 1 / 2.5)
    assert s["prompt_tokens_computed"] == 32 and s["prompt_tokens_cached"] == 192
    assert s["generated_tokens"] == 7 and s["busy_ms_per_generated_token"] == pytest.approx(2500 / 7)
    assert s["step_seconds_median"] == 0.5
    assert log.summary(200.0, 300.0) == {"steps": 0}


def test_the_cost_fit_recovers_known_costs_and_names_what_they_leave_out():
    # busy = 0.02 s a step + 0.008 s a generated token + 0.003 s a prompt token, and 5 s more in "d"
    rows = {"a": (100, 1000, 500), "b": (300, 2000, 100), "c": (50, 4000, 3000), "d": (200, 1500, 800)}
    prof = {n: {"steps": s, "generated_tokens": g, "prompt_tokens_computed": p,
                "busy_seconds": 0.02 * s + 0.008 * g + 0.003 * p + (5.0 if n == "d" else 0.0)}
            for n, (s, g, p) in rows.items()}
    exact = cost_model({n: prof[n] for n in "abc"})
    assert exact["seconds_per_step"] == pytest.approx(0.02) and exact["seconds_per_generated_token"] == pytest.approx(0.008)
    assert exact["seconds_per_prompt_token_computed"] == pytest.approx(0.003)
    assert all(abs(w["unexplained_seconds"]) < 1e-9 for w in exact["windows"].values())
    off = cost_model(prof)["windows"]
    assert max(off, key=lambda n: off[n]["unexplained_seconds"]) == "d"
    assert cost_model({n: prof[n] for n in "ab"}) == {}
