"""The live runner's core: one problem's N traces on a real engine, under any policy.

For each problem of a cached reference run, traces are started on vLLM's async
engine with the reference run's prompts, sampling settings and per-trace seeds.
`LiveTraces` is where tokens come from (start, stream, stop, resume a trace);
the policy objects are the simulator's own, driven by one driver per kind:

- prefix policies (DeepPrune, cons, random): `dp.simulate.live.prefix`, every
  trace started at once, handed to the policy at its decision point, the
  clustering's losers stopped (`keep` / `resume` modes, see there);
- DeepConf online: `dp.simulate.live.deepconf`, warm-up traces first, then the
  rest, each stopped when its running confidence falls below the cut;
- ESC and Adaptive-Consistency: `dp.simulate.live.waves`, waves of traces
  started until the policy says the answers agree;
- Slim-SC: `dp.simulate.live.slimsc`, traces compared at token checkpoints;
- short-m@k: `dp.simulate.live.shortm`, every trace started, the rest stopped
  once m have finished.

Many problems run at once on the same engine (`dp.simulate.live.run`); nothing
here knows about the others. `compare` replays the simulator on the reference
traces in each problem's live order and counts the decisions that match.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from dp.answers import extract_answer, group_answers, is_correct
from dp.cache.store import stored_float, stored_scalar
from dp.errors import DPError
from dp.seeds import derive
from dp.seeds import rng as make_rng
from dp.simulate.replay.context import ProblemContext
from dp.types import FinishReason, Problem, TraceRecord
from dp.votes import arrival_ranks, majority

MODES = ("keep", "resume")


@dataclass
class ProblemLive:
    """What happened to one problem live."""

    problem_id: str
    records: list[TraceRecord]
    arrival: list[int]  # trace indices in the order they reached the policy (decision point, start)
    decision_token: np.ndarray  # (N,) tokens at the decision point (the replay's charge)
    finished: np.ndarray  # (N,) bool, ran to the end and voted
    tokens: np.ndarray  # (N,) tokens really generated
    correct: bool | None  # None: the problem has no gold answer (a served question)
    seconds: float
    judge_seconds: float = 0.0
    judge_pairs: int = 0
    started: np.ndarray | None = None  # (N,) bool; None = every trace was started
    answer: str | None = None  # the voted answer
    weights: np.ndarray | None = None  # (N,) vote weights the policy gave, None = one vote each
    notes: list[str] = field(default_factory=list)

    @property
    def order(self) -> np.ndarray:
        """The full arrival order a replay of this problem uses: arrivals, then the never-started."""
        return np.asarray(full_order(self.arrival, len(self.records)), dtype=np.int64)


def live_prefix_id(problem_id: str, t: int) -> int:
    """A negative trace id for live prefix t of a problem, distinct across problems (judge-score keys)."""
    base = int.from_bytes(hashlib.blake2b(problem_id.encode(), digest_size=5).digest(), "big")
    return -(base * 65536 + t + 1)


OnDelta = Callable[[int, int, bool], object]  # (trace, tokens already seen, done) -> None or an awaitable


class LiveTraces:
    """N traces of one problem on the engine: start, stream, stop, resume. No policy here."""

    def __init__(self, engine, problem: Problem, seeds: list[int], spec, seed: int, admission=None):
        from dp.generate.prompts import build_prompt
        from dp.generate.stream import Stream

        self.engine, self.problem, self.seeds, self.spec, self.seed = engine, problem, seeds, spec, seed
        self.admission = admission  # counts this problem's traces in flight (dp.simulate.live.admission)
        self.n = len(seeds)
        self.prompt_ids = engine.tokenizer(build_prompt(engine.tokenizer, problem),
                                           add_special_tokens=False)["input_ids"]
        tag = time.monotonic_ns()
        self.streams = [Stream(f"{problem.problem_id}-{i}-{tag}") for i in range(self.n)]
        self.tasks: dict[int, asyncio.Task] = {}
        self.stopped = np.zeros(self.n, dtype=bool)  # aborted by us
        self._resumes: list[asyncio.Task] = []
        self.t0 = time.perf_counter()

    def start(self, t: int, on_delta: OnDelta | None = None) -> asyncio.Task:
        self._in_flight(+1)
        task = asyncio.ensure_future(self._consume(t, on_delta))
        self.tasks[t] = task
        return task

    def _in_flight(self, step: int) -> None:
        if self.admission is not None:
            (self.admission.trace_started if step > 0 else self.admission.trace_ended)()

    async def run(self, traces: Iterable[int], on_delta: OnDelta | None = None) -> None:
        """Start `traces` and wait until each has ended."""
        await asyncio.gather(*[self.start(t, on_delta) for t in traces])

    async def _consume(self, t: int, on_delta: OnDelta | None) -> None:
        s, seen = self.streams[t], 0
        try:
            async for _ in self.engine.stream(s, self.prompt_ids, self.spec, self.seeds[t]):
                if on_delta is not None:
                    out = on_delta(t, seen, s.finish is not None)
                    seen = s.n
                    if out is not None:  # an awaitable (a stop, an arrival), or None on most deltas
                        await out
        finally:
            self._in_flight(-1)
        if on_delta is not None:  # the end, also when the last delta carried no finish reason
            out = on_delta(t, seen, True)
            if out is not None:
                await out

    async def stop(self, t: int) -> None:
        if not self.stopped[t] and self.streams[t].finish is None:
            self.stopped[t] = True
            await self.engine.abort(self.streams[t].request_id)

    def resume(self, t: int) -> None:
        """Continue a stopped trace from where it stopped (a new seed derived from the run's)."""
        self._resumes.append(asyncio.ensure_future(self._resume(t)))

    async def _resume(self, t: int) -> None:
        await self.tasks[t]  # the first request has ended: nothing else appends to this stream
        s = self.streams[t]
        left = self.spec.max_tokens - s.n
        if left <= 0 or (s.finish not in (None, FinishReason.ABORT)):
            return
        s.finish = None
        s.request_id = f"{s.request_id}-resume"
        self._in_flight(+1)
        try:
            async for _ in self.engine.stream(s, list(self.prompt_ids) + s.ids, self.spec,
                                              derive(self.seed, "resume", self.problem.problem_id, t), left):
                pass
        finally:
            self._in_flight(-1)

    async def wait(self) -> float:
        """Wait for every started trace (and resumption); the seconds since the problem began."""
        while True:
            pending = [x for x in list(self.tasks.values()) + self._resumes if not x.done()]
            if not pending:
                break
            await asyncio.gather(*pending)
        for x in list(self.tasks.values()) + self._resumes:
            x.result()  # re-raise a failure
        return time.perf_counter() - self.t0

    def confidence(self, t: int, start: int = 0) -> np.ndarray:
        """Token confidences of trace t from token `start` on, as the cache stores them."""
        return stored_float(self.streams[t].confidence(start))

    def new_confidences(self, t: int, start: int) -> list[float] | np.ndarray:
        """`confidence(t, start)` for the tokens of a delta: a few are computed in plain Python
        (`Stream.few_confidences`, `stored_scalar`: the same numbers, no numpy call per delta)."""
        few = self.streams[t].few_confidences(start)
        return self.confidence(t, start) if few is None else [stored_scalar(c) for c in few]

    def text(self, t: int) -> tuple[str, np.ndarray]:
        return self.engine.text(self.streams[t])

    def records(self) -> list[TraceRecord]:
        return [self.engine.record(self.streams[t], self.problem.problem_id, t, self.seeds[t], self.spec)
                for t in range(self.n)]

    def tokens(self) -> np.ndarray:
        return np.array([s.n for s in self.streams], dtype=np.int64)

    def vote(self, records: list[TraceRecord], voters: np.ndarray, arrival: list[int],
             weights: np.ndarray | None) -> tuple[str | None, bool | None]:
        """(voted answer, correct) over the voters' final answers; ties by arrival. correct is
        None when the problem has no gold answer (never False: it is not graded)."""
        kind = self.problem.kind
        answers = [extract_answer(r.text, kind) if voters[t] else None for t, r in enumerate(records)]
        classes = group_answers(answers, kind)
        ranks = arrival_ranks(np.asarray(full_order(arrival, self.n), dtype=np.int64)[None, :])[0]
        win = majority(classes, ranks, weights)
        if win < 0:
            return None, is_correct(None, self.problem.gold, kind)
        answer = answers[int(np.flatnonzero(classes == win)[0])]
        ok = is_correct(answer, self.problem.gold, kind)
        return answer, None if ok is None else bool(ok)


def graded_accuracy(correct: list[bool | None]) -> tuple[float | None, int]:
    """(share correct over the graded problems, graded problems): None where a problem has no
    gold answer counts in neither; (None, 0) when none has one."""
    graded = [bool(c) for c in correct if c is not None]
    return (float(np.mean(graded)) if graded else None), len(graded)


def full_order(arrival: list[int], n: int) -> list[int]:
    """Arrivals first, then the traces that never arrived, by index."""
    seen = set(arrival)
    return list(arrival) + [t for t in range(n) if t not in seen]


def driver_for(policy):
    """The live driver coroutine of a policy object (by the interface it implements)."""
    from dp.simulate.live.deepconf import drive_deepconf
    from dp.simulate.live.prefix import drive_prefix
    from dp.simulate.live.shortm import drive_shortm
    from dp.simulate.live.slimsc import drive_slimsc
    from dp.simulate.live.waves import drive_waves
    from dp.simulate.policies.base import PrefixPolicy
    from dp.simulate.policies.deepconf import DeepConf
    from dp.simulate.policies.sequential import WavePolicy
    from dp.simulate.policies.shortm import ShortM
    from dp.simulate.policies.slimsc import SlimSC

    if isinstance(policy, PrefixPolicy) and not getattr(policy, "judge_override", None):
        return drive_prefix
    if isinstance(policy, DeepConf):
        return drive_deepconf
    if isinstance(policy, WavePolicy):
        return drive_waves
    if isinstance(policy, SlimSC):
        return drive_slimsc
    if isinstance(policy, ShortM):
        return drive_shortm
    raise DPError(f"policy '{policy.name}' has no live form")


async def run_problem(engine, policy, judge, rule, problem: Problem, seeds: list[int],
                      spec, mode: str, seed: int, admission=None) -> ProblemLive:
    """Run N traces of one problem under `policy`; returns what was generated and decided.
    `admission` (optional) counts its traces in flight for the session's admission."""
    if mode not in MODES:
        raise DPError(f"unknown live mode '{mode}'; known: {', '.join(MODES)}")
    lt = LiveTraces(engine, problem, seeds, spec, seed, admission)
    rng = make_rng(seed, policy.name, problem.problem_id)
    return await driver_for(policy)(lt, policy, judge=judge, rule=rule, mode=mode, rng=rng)


def compare(contexts: list[ProblemContext], policy, lives: list[ProblemLive], seed: int) -> dict:
    """Replay the simulator on the reference traces in each problem's live order."""
    by_id = {c.problem_id: c for c in contexts}
    matched = total = 0
    per_problem = {}
    sim_tokens = 0
    for live in lives:
        ctx = by_id[live.problem_id]
        plan = policy.plan(ctx, live.order[None, :], make_rng(seed, policy.name, ctx.problem_id))
        sim_finish = plan.voters[0]
        same = int((sim_finish == live.finished).sum())
        matched += same
        total += ctx.n
        tokens = int(np.minimum(plan.stop_at[0], ctx.lengths).sum())
        sim_tokens += tokens
        per_problem[live.problem_id] = {"tokens": tokens, "live_tokens": int(live.tokens.sum()),
                                        "decisions_matched": same,
                                        "prefixes_identical": _same_prefixes(ctx, live)}
    return {"simulated_tokens": sim_tokens, "decisions_matched": matched, "decisions_total": total,
            "simulated_per_problem": per_problem}


def _same_prefixes(ctx: ProblemContext, live: ProblemLive) -> bool | None:
    """Prefix policies: whether every live prefix equals the cached one (None for other policies)."""
    if ctx.scores is None:
        return None
    return all(p.text == (live.records[t].text[: len(p.text)]) and int(live.decision_token[t]) == p.n_tokens
               for t, p in enumerate(ctx.scores.prefixes))
