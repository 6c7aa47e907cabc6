"""Live driver of the prefix policies (DeepPrune, confidence-weighted DeepPrune, cons, random):
every trace starts at once.

Each trace is handed to the policy (`on_prefix`, R = 1) when it reaches its
decision point under the truncation rule (`dp.simulate.live.arrival`, O(new tokens)
per delta); once every trace has, `finish` says which run to the end and the
others are stopped. Two ways to let the kept traces finish (`mode`):

- `keep`: every trace keeps decoding until the clustering is done; the kept ones
  simply go on (their continuations are the cached ones when the engine is
  deterministic). Compare with the simulator's `concurrent` accounting.
- `resume`: a trace is stopped as soon as it is judged; the kept ones are resumed
  later from their prefix (one more prefill; continuations re-sampled with a
  derived seed). Compare with the simulator's `paper` accounting.

The policy (and so the judge) runs off the event loop, in the one judge thread
(`dp.simulate.live.off_loop`), so a slow neural judge never stalls the streams of
other traces or a server's other routes, while judge calls stay one at a time and
in arrival order (the decisions are the replay's). In `resume`
mode a trace is stopped as soon as it arrives, before it is judged.
"""

from __future__ import annotations

import time

import numpy as np

from dp.judge.base import Prefix
from dp.judge.truncation import prefix_text
from dp.simulate.live.arrival import Arrival
from dp.simulate.live.off_loop import off_loop
from dp.simulate.live.problem import LiveTraces, ProblemLive, live_prefix_id
from dp.simulate.replay.context import ProblemContext
from dp.simulate.replay.scores import PairScores


async def drive_prefix(lt: LiveTraces, policy, *, judge, rule, mode: str, rng) -> ProblemLive:
    n, pid = lt.n, lt.problem.problem_id
    prefixes: list[Prefix | None] = [None] * n
    ctx = ProblemContext(problem_id=pid, trace_ids=np.arange(n), lengths=np.zeros(n, np.int64),
                         classes=np.full(n, -1), correct=np.zeros(n, bool), decision=np.zeros(n, np.int64),
                         scores=PairScores(judge, rule, prefixes) if judge is not None else None)
    state = policy.begin(ctx, 1, rng)
    detectors = [Arrival(rule, lt.engine.token_text) for _ in range(n)]
    arrival: list[int] = []
    arrived = np.zeros(n, dtype=bool)
    decision = np.zeros(n, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    judge_time = 0.0
    judged = 0

    def judge_one(t: int) -> float:
        t0 = time.perf_counter()
        policy.on_prefix(state, np.array([t]))
        return time.perf_counter() - t0

    async def on_arrival(t: int, d: int) -> None:
        nonlocal judge_time, judged
        arrived[t] = True
        text, offsets = lt.text(t)  # once per trace, at its decision point
        prefixes[t] = Prefix(live_prefix_id(pid, t), prefix_text(text, offsets, d), int(d), -1)
        decision[t] = d
        arrival.append(t)
        judging = off_loop(judge_one, t)  # queued now, so judged in arrival order
        if mode == "resume":
            await lt.stop(t)
        spent = await judging
        judge_time += spent  # (not `judge_time += await ...`: that reads judge_time before the wait)
        judged += 1
        if judged == n:  # every trace judged (the last to arrive is the last judged)
            finished[:] = (await off_loop(policy.finish, state))[0]
            for i in range(n):
                if not finished[i]:
                    await lt.stop(i)
                elif lt.stopped[i]:
                    lt.resume(i)

    def on_delta(t: int, seen: int, done: bool):
        """Feed the delta to the trace's detector; at its decision point, the arrival to await."""
        if arrived[t]:
            return None
        det = detectors[t]
        d = det.feed(lt.streams[t].ids[len(det.ids):], done=done)
        if d is None and done:
            d = lt.streams[t].n
        return on_arrival(t, d) if d is not None else None

    for t in range(n):
        lt.start(t, on_delta)
    seconds = await lt.wait()
    records = lt.records()
    if hasattr(policy, "set_confidence"):  # confidence-weighted DeepPrune: the streamed trace scores
        policy.set_confidence(state, policy.trace_scores([lt.confidence(t) for t in range(n)]))
    weights = policy.weights(state)
    weights = None if weights is None else weights[0]
    answer, ok = lt.vote(records, finished, arrival, weights)
    pairs = policy.pairs(state)
    return ProblemLive(
        problem_id=pid, records=records, arrival=arrival, decision_token=decision, finished=finished,
        tokens=lt.tokens(), correct=ok, seconds=seconds, judge_seconds=judge_time,
        judge_pairs=int(pairs[0]) if pairs is not None else 0, answer=answer, weights=weights,
    )
