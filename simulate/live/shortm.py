"""Live driver of short-m@k: every trace starts at once; once m have finished the rest stop.

Traces end in the order the engine reports them (at equal decoding speed, by
length); the first `policy.finishers(n)` to end are the voters, in that order
(which is the `arrival` a replay of this problem uses, so `compare` replays
exactly these finishers), and every other trace is stopped at once. The stop is
asked for then; the engine may decode a few more tokens, counted in `tokens`
(really generated), while `decision_token` holds what the replay charges:
min(length, the m-th finisher's length). Ties in the vote go to the class whose
voter finished first.
"""

from __future__ import annotations

import numpy as np

from dp.simulate.live.problem import LiveTraces, ProblemLive


async def drive_shortm(lt: LiveTraces, policy, *, judge=None, rule=None, mode: str = "keep",
                       rng=None) -> ProblemLive:
    n = lt.n
    m = policy.finishers(n)
    done_order: list[int] = []
    horizon: list[int] = []  # the m-th finisher's length, once known

    async def on_delta(t: int, seen: int, done: bool) -> None:
        if not done or t in done_order or lt.stopped[t]:
            return
        done_order.append(t)
        if len(done_order) == m:
            horizon.append(lt.streams[t].n)
            for i in range(n):
                if i not in done_order:
                    await lt.stop(i)

    for t in range(n):
        lt.start(t, on_delta)
    seconds = await lt.wait()
    records = lt.records()
    tokens = lt.tokens()
    voters = np.zeros(n, dtype=bool)
    voters[done_order[:m]] = True
    cap = horizon[0] if horizon else int(tokens.max(initial=0))
    answer, ok = lt.vote(records, voters, done_order[:m], None)
    return ProblemLive(
        problem_id=lt.problem.problem_id, records=records, arrival=done_order[:m],
        decision_token=np.minimum(tokens, cap), finished=voters, tokens=tokens, correct=ok,
        seconds=seconds, answer=answer,
    )
