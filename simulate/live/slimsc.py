"""Live driver of Slim-SC: every trace starts at once; at each checkpoint the trace's
latest segment is embedded and compared with those of the traces kept there.

A trace takes part in checkpoint c (c x `every` tokens) once it is known to run
past it (it has more tokens, or more are coming); checkpoints are decided in the
order traces reach them, by the policy's own `decide` (R = 1). A pruned trace is
stopped at once (the engine may decode a few more tokens, counted in `tokens`).
Its segment text is cut from the streamed text by token offsets, as the cache's
reader cuts it for the replay. Embedding and deciding run off the event loop, in
the live runner's one judge thread, in the order the deltas came in; the
segments of the deltas that arrive together (a problem's traces reach a
checkpoint in the same engine step) are embedded in one call
(`dp.simulate.live.off_loop.Batched`): one MiniLM call a text cost ~10 ms of the
engine's two cores here, ~2-3 ms a text in a batch of 16.
"""

from __future__ import annotations

import time

import numpy as np

from dp.simulate.live.off_loop import Batched
from dp.simulate.live.problem import LiveTraces, ProblemLive


async def drive_slimsc(lt: LiveTraces, policy, *, judge=None, rule=None, mode: str = "keep", rng=None) -> ProblemLive:
    n, every = lt.n, policy.params.every
    state = policy.begin(n, 1)
    emb: dict[int, np.ndarray] = {}  # checkpoint -> (N, d) segments of the traces kept there
    reached = np.zeros(n, dtype=np.int64)  # checkpoints decided per trace
    arrival: list[int] = []  # order of first checkpoint arrivals
    spent = [0.0]  # seconds in the judge thread (embedding and deciding)

    async def on_delta(t: int, seen: int, done: bool) -> None:
        s = lt.streams[t]
        # checkpoints c known to lie inside the trace (length > c x every): an unfinished stream
        # has more tokens coming
        last = max(s.n - 1, 0) // every if done else s.n // every
        if state.pruned_at[0, t] or last <= reached[t]:
            return
        text, offsets = lt.text(t)
        if await checkpoints((t, text, offsets, last)):
            await lt.stop(t)

    def decide(requests: list[tuple]) -> list[bool]:
        """Decide each request's checkpoints (trace t's up to `last`), in order, their segments
        embedded in one call (in the judge thread); True = pruned."""
        t0 = time.perf_counter()
        spans = [(t, c, text, offsets) for t, text, offsets, last in requests for c in range(int(reached[t]) + 1, last + 1)]
        vecs = policy.embed([text[int(offsets[(c - 1) * every - 1]) if c > 1 else 0:int(offsets[c * every - 1])]
                             for _, c, text, offsets in spans])
        pruned = {}
        for (t, c, _, _), vec in zip(spans, vecs, strict=True):
            if t in pruned:  # pruned at an earlier checkpoint of the same request
                continue
            table = emb.setdefault(c, np.zeros((n, vec.size), dtype=np.float32))
            table[t] = vec
            if c == 1:
                arrival.append(t)
            reached[t] = c
            if policy.decide(state, c, np.array([t]), (table @ vec)[None, :])[0]:
                pruned[t] = True
        spent[0] += time.perf_counter() - t0
        return [pruned.get(t, False) for t, *_ in requests]

    checkpoints = Batched(decide)
    await lt.run(range(n), on_delta)
    seconds = await lt.wait()
    records = lt.records()
    tokens = lt.tokens()
    voters = state.pruned_at[0] == 0
    answer, ok = lt.vote(records, voters, arrival, None)
    return ProblemLive(
        problem_id=lt.problem.problem_id, records=records, arrival=arrival,
        decision_token=np.where(voters, tokens, state.pruned_at[0]), finished=voters, tokens=tokens,
        correct=ok, seconds=seconds, judge_seconds=spent[0], judge_pairs=int(state.comparisons[0]), answer=answer,
    )
