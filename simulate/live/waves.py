"""Live driver of the sampling-until-agreement policies (ESC, Adaptive-Consistency).

Traces are started in index order, one wave of `policy.wave_size` at a time; when
a wave has ended its answers are grouped with all answers so far and fed to the
policy (`feed`, R = 1), which says whether to stop sampling. The live order is
the index order, so `compare` replays the same waves on the cached traces.
Unstarted traces cost nothing. Many problems in flight keep the engine's batch
full while each problem waits for its wave (`dp.simulate.live.run`).
"""

from __future__ import annotations

import numpy as np

from dp.answers import extract_answer, group_answers
from dp.simulate.live.problem import LiveTraces, ProblemLive


async def drive_waves(lt: LiveTraces, policy, *, judge=None, rule=None, mode: str = "keep", rng=None) -> ProblemLive:
    n, kind = lt.n, lt.problem.kind
    state = policy.begin(n, 1)
    answers: list[str | None] = []
    a = 0  # traces started so far
    while a < n:
        b = min(a + policy.wave_size, n)
        await lt.run(range(a, b))
        answers += [extract_answer(lt.text(t)[0], kind) for t in range(a, b)]
        classes = group_answers(answers, kind)  # ids by first appearance: stable as answers are added
        stop = bool(policy.feed(state, classes[None, a:b])[0])
        a = b
        if stop:
            break
    seconds = await lt.wait()
    records = lt.records()
    started = np.arange(n) < a
    answer, ok = lt.vote(records, started, list(range(a)), None)
    tokens = lt.tokens()
    return ProblemLive(
        problem_id=lt.problem.problem_id, records=records, arrival=list(range(a)), decision_token=tokens.copy(),
        finished=started, tokens=tokens, correct=ok, seconds=seconds, started=started, answer=answer,
    )
