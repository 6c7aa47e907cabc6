"""Live driver of Slim-SC: every trace starts at once; at each checkpoint the trace's
latest segment is embedded and compared with those of the traces kept there.

A trace takes part in checkpoint c (c x `every` tokens) once it is known to run
past it (it has more tokens, or more are coming); checkpoints are decided in the
order traces reach them, by the policy's own `decide` (R = 1). A pruned trace is
stopped at once (the engine may decode a few more tokens, counted in `tokens`).
Its segment text is cut from the streamed text by token offsets, as the cache's
reader cuts it for the replay. Embedding and deciding run off the event loop, in
the live runner's one judge thread, in the order the deltas came in; the
segments of the deltas that arrive together, from every problem of the session
(traces that reach a checkpoint in the same engine step), are embedded in one
call (`dp.simulate.live.off_loop.Batched`): one MiniLM call a text costs ~10 ms
here, ~2-3 ms a text in a batch of 16, and those milliseconds are taken from the
engine when both run on the same cores.
"""

from __future__ import annotations

import asyncio
import time
import weakref

import numpy as np

from dp.simulate.live.off_loop import Batched
from dp.simulate.live.problem import LiveTraces, ProblemLive


class _Checkpoints:
    """One problem's Slim-SC state for the live driver: the segments kept at each checkpoint."""

    def __init__(self, policy, n: int):
        self.policy, self.n, self.every = policy, n, policy.params.every
        self.state = policy.begin(n, 1)
        self.emb: dict[int, np.ndarray] = {}  # checkpoint -> (N, d) segments of the traces kept there
        self.reached = np.zeros(n, dtype=np.int64)  # checkpoints decided per trace
        self.arrival: list[int] = []  # order of first checkpoint arrivals
        self.seconds = 0.0  # this problem's share of the judge thread's time

    def segments(self, t: int, text: str, offsets, last: int) -> list[str]:
        """Trace t's segment texts of the checkpoints after the last one decided, up to `last`."""
        every = self.every
        return [text[int(offsets[(c - 1) * every - 1]) if c > 1 else 0:int(offsets[c * every - 1])]
                for c in range(int(self.reached[t]) + 1, last + 1)]

    def decide(self, t: int, last: int, vecs: np.ndarray) -> bool:
        """Decide trace t's checkpoints after the last one decided with their segments' vectors; True = pruned."""
        for c, vec in zip(range(int(self.reached[t]) + 1, last + 1), vecs, strict=True):
            table = self.emb.setdefault(c, np.zeros((self.n, vec.size), dtype=np.float32))
            table[t] = vec
            if c == 1:
                self.arrival.append(t)
            self.reached[t] = c
            if self.policy.decide(self.state, c, np.array([t]), (table @ vec)[None, :])[0]:
                return True
        return False


def _embed_and_decide(requests: list[tuple]) -> list[bool]:
    """Requests (problem, t, text, offsets, last) of any problems sharing one embedder, in the order
    made: every segment embedded in one call, then each request decided in order (in the judge thread)."""
    t0 = time.perf_counter()
    spans = [p.segments(t, text, offsets, last) for p, t, text, offsets, last in requests]
    vecs = requests[0][0].policy.embed([x for span in spans for x in span])
    out, at = [], 0
    for (p, t, _, _, last), span in zip(requests, spans, strict=True):
        out.append(p.decide(t, last, vecs[at:at + len(span)]))
        at += len(span)
    elapsed, total = time.perf_counter() - t0, sum(len(span) for span in spans) or 1
    for (p, *_), span in zip(requests, spans, strict=True):  # the call's time, shared by segments
        p.seconds += elapsed * len(span) / total
    return out


# one batcher per (event loop, embedder): the problems of a live session (the requests of a server)
# share their embedding calls; bounded by the embedders of the process (one: `segment_embedder`)
_batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _batcher(policy) -> Batched:
    per_loop = _batchers.setdefault(asyncio.get_running_loop(), {})
    key = id(policy.embedder)
    if key not in per_loop:
        per_loop[key] = (policy.embedder, Batched(_embed_and_decide))  # the embedder held: its id stays its own
    return per_loop[key][1]


async def drive_slimsc(lt: LiveTraces, policy, *, judge=None, rule=None, mode: str = "keep", rng=None) -> ProblemLive:
    n, every = lt.n, policy.params.every
    cp = _Checkpoints(policy, n)
    state, batched = cp.state, _batcher(policy)

    async def on_delta(t: int, seen: int, done: bool) -> None:
        s = lt.streams[t]
        # checkpoints c known to lie inside the trace (length > c x every): an unfinished stream
        # has more tokens coming
        last = max(s.n - 1, 0) // every if done else s.n // every
        if state.pruned_at[0, t] or last <= cp.reached[t]:
            return
        text, offsets = lt.text(t)
        if await batched((cp, t, text, offsets, last)):
            await lt.stop(t)

    await lt.run(range(n), on_delta)
    seconds = await lt.wait()
    records = lt.records()
    tokens = lt.tokens()
    voters = state.pruned_at[0] == 0
    answer, ok = lt.vote(records, voters, cp.arrival, None)
    return ProblemLive(
        problem_id=lt.problem.problem_id, records=records, arrival=cp.arrival,
        decision_token=np.where(voters, tokens, state.pruned_at[0]), finished=voters, tokens=tokens,
        correct=ok, seconds=seconds, judge_seconds=cp.seconds, judge_pairs=int(state.comparisons[0]), answer=answer,
    )
