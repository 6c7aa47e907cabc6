"""The live runner: the simulator's policy objects driving a real engine.

For each problem of a cached reference run, N traces are started on vLLM's async
engine with the reference run's prompts, sampling settings and per-trace seeds.
Each trace is handed to the policy (`on_prefix`, R = 1) when it reaches its
decision point under the truncation rule; once every trace has, `finish` says
which run to the end and the others are stopped. Two ways to let the kept traces
finish (`mode`):

- `keep`: every trace keeps decoding until the clustering is done; the kept ones
  simply go on (their continuations are the cached ones when the engine is
  deterministic). Compare with the simulator's `concurrent` accounting.
- `resume`: a trace is stopped as soon as it is judged; the kept ones are resumed
  later from their prefix (cheaper; continuations are re-sampled with a derived
  seed). Compare with the simulator's `paper` accounting.

The judge runs in the event loop while the engine core (a separate process) keeps
decoding. `compare` replays the simulator on the reference traces in the live
arrival order and counts the pruning decisions that match. Writing the live run
to the cache is left to the caller (`dp.cli_live`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from dp.answers import arrival_ranks, extract_answer, group_answers, is_correct, majority
from dp.errors import DPError
from dp.judge.base import Prefix
from dp.judge.truncation import TruncationRule, prefix_text
from dp.seeds import derive
from dp.seeds import rng as make_rng
from dp.simulate.arrival import Arrival
from dp.simulate.context import ProblemContext
from dp.simulate.scores import PairScores
from dp.types import FinishReason, Problem, TraceRecord

MODES = ("keep", "resume")


@dataclass
class ProblemLive:
    """What happened to one problem live."""

    problem_id: str
    records: list[TraceRecord]
    arrival: list[int]  # trace indices in the order they reached their decision points
    decision_token: np.ndarray  # (N,) tokens at the decision point
    finished: np.ndarray  # (N,) bool, kept to the end by the policy
    tokens: np.ndarray  # (N,) tokens really generated
    correct: bool
    seconds: float
    judge_seconds: float = 0.0
    judge_pairs: int = 0
    notes: list[str] = field(default_factory=list)


def live_prefix_id(problem_id: str, t: int) -> int:
    """A negative trace id for live prefix t of a problem, distinct across problems (judge-score keys)."""
    base = int.from_bytes(hashlib.blake2b(problem_id.encode(), digest_size=5).digest(), "big")
    return -(base * 65536 + t + 1)


async def run_problem(engine, policy, judge, rule: TruncationRule, problem: Problem, seeds: list[int],
                      spec, mode: str, seed: int) -> ProblemLive:
    """Run N traces of one problem under `policy`; returns what was generated and decided."""
    from dp.generate.prompts import build_prompt
    from dp.generate.stream import Stream

    if mode not in MODES:
        raise DPError(f"unknown live mode '{mode}'; known: {', '.join(MODES)}")
    n = len(seeds)
    prompt_ids = engine.tokenizer(build_prompt(engine.tokenizer, problem), add_special_tokens=False)["input_ids"]
    prefixes: list[Prefix | None] = [None] * n
    ctx = ProblemContext(problem_id=problem.problem_id, trace_ids=np.arange(n), lengths=np.zeros(n, np.int64),
                         classes=np.full(n, -1), correct=np.zeros(n, bool), decision=np.zeros(n, np.int64),
                         scores=PairScores(judge, rule, prefixes) if judge is not None else None)
    state = policy.begin(ctx, 1, make_rng(seed, policy.name, problem.problem_id))
    streams = [Stream(f"{problem.problem_id}-{i}-{time.monotonic_ns()}") for i in range(n)]
    arrival: list[int] = []
    arrived = np.zeros(n, dtype=bool)
    stopped = np.zeros(n, dtype=bool)  # aborted by us
    decision = np.zeros(n, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)
    tasks: list[asyncio.Task] = []
    extra: list[asyncio.Task] = []
    judge_time = [0.0]

    async def stop(t: int) -> None:
        if not stopped[t] and streams[t].finish is None:
            stopped[t] = True
            await engine.abort(streams[t].request_id)

    async def on_arrival(t: int, d: int) -> None:
        arrived[t] = True
        text, offsets = engine.text(streams[t])  # once per trace, at its decision point
        prefixes[t] = Prefix(live_prefix_id(problem.problem_id, t), prefix_text(text, offsets, d), int(d), -1)
        decision[t] = d
        arrival.append(t)
        t0 = time.perf_counter()
        policy.on_prefix(state, np.array([t]))
        judge_time[0] += time.perf_counter() - t0
        if mode == "resume":
            await stop(t)
        if len(arrival) == n:
            finished[:] = policy.finish(state)[0]
            for i in range(n):
                if not finished[i]:
                    await stop(i)
                elif stopped[i]:
                    extra.append(asyncio.ensure_future(resume(i)))

    async def consume(t: int) -> None:
        detector = Arrival(rule, engine.token_text)
        async for s in engine.stream(streams[t], prompt_ids, spec, seeds[t]):
            if not arrived[t]:
                d = detector.feed(s.ids[len(detector.ids):], done=s.finish is not None)
                if d is not None:
                    await on_arrival(t, d)
        if not arrived[t]:
            d = detector.feed(streams[t].ids[len(detector.ids):], done=True)
            await on_arrival(t, d if d is not None else streams[t].n)

    async def resume(t: int) -> None:
        await tasks[t]  # the first request has ended: nothing else appends to this stream
        s = streams[t]
        left = spec.max_tokens - s.n
        if left <= 0 or (s.finish not in (None, FinishReason.ABORT)):
            return
        s.finish = None
        s.request_id = f"{s.request_id}-resume"
        async for _ in engine.stream(s, list(prompt_ids) + s.ids, spec,
                                     derive(seed, "resume", problem.problem_id, t), left):
            pass

    t0 = time.perf_counter()
    tasks.extend(asyncio.ensure_future(consume(t)) for t in range(n))
    await asyncio.gather(*tasks)
    while extra:
        pending, extra[:] = list(extra), []
        await asyncio.gather(*pending)
    seconds = time.perf_counter() - t0
    records = [engine.record(streams[t], problem.problem_id, t, seeds[t], spec) for t in range(n)]
    for t in range(n):
        if not finished[t]:
            records[t].finish_reason = FinishReason.ABORT
    answers = [extract_answer(r.text, problem.kind) if finished[t] else None for t, r in enumerate(records)]
    classes = group_answers(answers, problem.kind)
    ranks = arrival_ranks(np.asarray(arrival, dtype=np.int64)[None, :])[0]
    weights = policy.weights(state)
    win = majority(classes, ranks, None if weights is None else weights[0])  # the policy's vote, ties by arrival
    ok = win >= 0 and bool(is_correct(answers[int(np.flatnonzero(classes == win)[0])], problem.gold, problem.kind))
    pairs = policy.pairs(state)
    return ProblemLive(
        problem_id=problem.problem_id, records=records, arrival=arrival, decision_token=decision,
        finished=finished, tokens=np.array([s.n for s in streams], dtype=np.int64), correct=ok,
        seconds=seconds, judge_seconds=judge_time[0],
        judge_pairs=int(pairs[0]) if pairs is not None else 0,
    )


def compare(contexts: list[ProblemContext], policy, lives: list[ProblemLive], seed: int) -> dict:
    """Replay the simulator on the reference traces in each problem's live arrival order."""
    by_id = {c.problem_id: c for c in contexts}
    matched = total = 0
    per_problem = {}
    sim_tokens = 0
    for live in lives:
        ctx = by_id[live.problem_id]
        plan = policy.plan(ctx, np.asarray(live.arrival)[None, :], make_rng(seed, policy.name, ctx.problem_id))
        sim_finish = plan.voters[0]
        matched += int((sim_finish == live.finished).sum())
        total += ctx.n
        tokens = int(np.minimum(plan.stop_at[0], ctx.lengths).sum())
        sim_tokens += tokens
        per_problem[live.problem_id] = {"tokens": tokens, "live_tokens": int(live.tokens.sum()),
                                        "decisions_matched": int((sim_finish == live.finished).sum()),
                                        "prefixes_identical": _same_prefixes(ctx, live)}
    return {"simulated_tokens": sim_tokens, "decisions_matched": matched, "decisions_total": total,
            "simulated_per_problem": per_problem}


def _same_prefixes(ctx: ProblemContext, live: ProblemLive) -> bool:
    if ctx.scores is None:
        return False
    return all(p.text == (live.records[t].text[: len(p.text)]) and int(live.decision_token[t]) == p.n_tokens
               for t, p in enumerate(ctx.scores.prefixes))
