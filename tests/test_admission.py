"""Admission by traces in flight (`dp.simulate.live.admission`), on asyncio's real scheduling."""

from __future__ import annotations

import asyncio

import pytest

from dp.errors import DPError
from dp.simulate.live.admission import Admission


def _session(adm: Admission, widths: list[int], log: list, fail: int | None = None) -> float:
    """Problem p starts widths[p] traces, holds them for a moment, ends them one by one."""

    async def problem(p: int):
        log.append(("start", p, adm.traces, adm.problems))
        for _ in range(widths[p]):
            adm.trace_started()
        await asyncio.sleep(0.01 * (1 + p % 3))
        if p == fail:
            raise DPError(f"problem {p} failed")
        for _ in range(widths[p]):
            adm.trace_ended()
            await asyncio.sleep(0.001)
        log.append(("end", p))
        return p

    done = []
    seconds = asyncio.run(adm.run(range(len(widths)), problem, lambda p, r: done.append(r)))
    log.append(("done", sorted(done)))
    return seconds


def test_problems_are_admitted_in_order_while_fewer_traces_than_the_limit_run():
    log: list = []
    adm = Admission(max_traces=8)
    _session(adm, [1] * 12, log)
    starts = [e for e in log if e[0] == "start"]
    assert [p for _, p, _, _ in starts] == list(range(12))  # in order
    assert all(traces < 8 for _, _, traces, _ in starts)  # each admitted only while there was room
    assert adm.peak_traces == 8  # one-trace problems: eight at once
    assert log[-1] == ("done", list(range(12)))
    assert adm.traces == 0 and adm.problems == 0


def test_a_wide_problem_fills_the_batch_alone_and_narrow_ones_share_it():
    adm = Admission(max_traces=8)
    _session(adm, [8, 2, 2, 2, 2, 16], [])
    # a problem starts in full once admitted: at most (limit - 1) + the widest problem at once
    assert 16 <= adm.peak_traces <= 7 + 16
    adm2 = Admission(max_traces=8)
    log: list = []
    _session(adm2, [3, 3, 3, 3], log)
    # admitted at 0, 3 and 6 traces in flight (< 8): three problems' traces at once, never four
    assert [e[2] for e in log if e[0] == "start"][:3] == [0, 3, 6]
    assert adm2.peak_traces <= 7 + 3  # the fourth once a trace of the first has ended


def test_a_problem_cap_holds_as_well():
    adm = Admission(max_traces=100, max_problems=2)
    log: list = []
    _session(adm, [1] * 6, log)
    assert all(e[3] <= 2 for e in log if e[0] == "start")  # counting the problem admitted
    assert adm.peak_traces == 2


def test_the_first_failure_is_raised_as_itself_and_cancels_the_rest():
    log: list = []
    with pytest.raises(DPError, match="problem 2 failed"):
        _session(Admission(max_traces=4), [1] * 10, log, fail=2)
    assert ("end", 9) not in log
