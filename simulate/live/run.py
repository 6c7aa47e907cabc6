"""`run_live`: the library call behind `dp live`.

Reads a cached reference run (problems, sampling settings, per-trace seeds),
starts the streaming engine, runs the policy live (see `dp.simulate.live`) on
as many problems at once as keep `max_traces` traces in flight on the one engine
(`dp.simulate.live.admission`; by default the engine's batch, `max_num_seqs`), so
that the batch stays full as pruning frees capacity and while a policy waits
between its phases (decisions per problem do not depend on the others), warns on stderr (and under `warnings`) about settings that cannot prune
and a judge trained on the run's questions (`dp.simulate.live.checks`), stores each problem's traces as soon as it is done (so a Ctrl-C or a
failing judge keeps what was generated), and with `compare` times a full
generation of the same traces (same window of problems in flight) and replays
the simulator in each problem's live order. The engine is shut down on every
exit path.

Only traces that started are stored as traces: a trace the policy never started
(ESC, Adaptive-Consistency and other wave policies that stop early) has no row in
`traces`, so `dp cache info` and a later replay never count it as a trace without
an answer; its `live_traces` row (decision `skip`, arrival -1) still says it was
never started.

A live run is stored with `"complete": false` in its settings until every
problem is done; running the same `dp live` again on such a run (same
reference run, policy, parameters, judge, rule, mode and seed) resumes it: the
stored problems are read back, not redone, and the output covers them all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from dataclasses import dataclass

import numpy as np

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.judge.base import load_judge
from dp.judge.truncation import TruncationRule
from dp.simulate.live.admission import Admission
from dp.simulate.live.checks import in_sample_warning, measured_warnings, prune_warnings
from dp.simulate.live.problem import ProblemLive, compare, driver_for, graded_accuracy, run_problem
from dp.simulate.live.store import read_problem, store_problem
from dp.simulate.policies.basic import Consensus
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.context import build_contexts, equip


@dataclass(frozen=True)
class LiveSettings:
    reference_run: str
    live_run: str
    policy: str = "deepprune"
    params: dict = dataclasses.field(default_factory=dict)
    judge: str = "features"
    truncate: str = "words:25"
    mode: str = "keep"
    max_in_flight: int | None = None  # a cap on problems at once (None: only the traces in flight count)
    max_traces: int | None = None  # traces in flight that admit problems (None: the engine's batch)
    dtype: str | None = None  # engine dtype; None = the engine's default (float32 on a CPU)
    limit: int | None = None
    seed: int = 0
    compare: bool = False
    replace: bool = False
    engine: str = "vllm"  # vllm, or replay: dp.generate.replay_engine, a stand-in for a GPU's pace
    replay_rate: float | None = None  # replay: engine tokens/s (None = as fast as dp takes them)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise DPError(f"unknown live engine '{self.engine}'; choose one of {', '.join(ENGINES)}")
        object.__setattr__(self, "rule", TruncationRule.parse(self.truncate))  # parsed once, at the edge



ENGINES = ("vllm", "replay")
IDENTITY = ("reference_run", "policy", "params", "judge", "truncate", "mode", "seed", "dtype", "engine")


def resumable(cache: Cache, s: LiveSettings) -> dict | None:
    """Per-problem results of an interrupted live run with these settings (to resume it),
    None when the live run is new or replaced; an error for a complete or different one."""
    if s.replace or not cache.has_run(s.live_run):
        return None
    stored = cache.run_info(s.live_run)["settings"]
    if stored.get("complete", True):
        raise DPError(f"run '{s.live_run}' already exists; use --replace or another --live-run")
    mine = dataclasses.asdict(s)
    # "engine" in a run's settings holds the engine's own settings; its kind is "engine_kind"
    diff = [k for k in IDENTITY if (stored.get("engine_kind", "vllm") if k == "engine" else stored.get(k)) != mine[k]]
    if diff:
        raise DPError(f"run '{s.live_run}' is an interrupted live run with other settings ({', '.join(diff)}); "
                      "use --replace or another --live-run")
    return dict(stored.get("done", {}))


@dataclass
class _Job:
    """One policy's live run inside a session."""

    s: LiveSettings
    policy: object
    judge: object
    done: dict | None
    lives: list
    done_wall: float
    live_seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)
    judge_in_sample: bool = False
    peak_traces: int = 0
    window: tuple = (None, None)  # (start, end) of this session's part, Unix seconds
    cpu_seconds: float = 0.0  # this process's CPU seconds in that part (the engine's own processes not counted)


def run_live(cache: Cache, s: LiveSettings, progress: bool = True) -> dict:
    """Run one policy live (see `run_lives`)."""
    return run_lives(cache, [s], progress)[0]


def run_lives(cache: Cache, settings: list[LiveSettings], progress: bool = True,
              stat_loggers: list | None = None) -> list[dict]:
    """Run each policy live in turn on ONE engine (same reference run, dtype and window);
    with `compare` on any, the full generation of the same traces is timed once, after them.
    `stat_loggers`: vLLM stat-logger factories for the vllm engine (a benchmark's log of its steps)."""
    from dp.generate.sampling import SamplingSpec
    from dp.generate.stream import StreamEngine

    first = settings[0]
    shared = ("reference_run", "dtype", "max_in_flight", "max_traces", "limit", "engine", "replay_rate")
    if any(getattr(x, k) != getattr(first, k) for x in settings for k in shared):
        raise DPError("policies run together must share the reference run, dtype, window, limit and engine")
    if len({x.live_run for x in settings}) < len(settings):
        raise DPError("each policy needs its own live run name")
    if first.max_in_flight is not None and first.max_in_flight < 1:
        raise DPError(f"--max-problems-in-flight must be >= 1, got {first.max_in_flight}")
    if first.max_traces is not None and first.max_traces < 1:
        raise DPError(f"--max-traces-in-flight must be >= 1, got {first.max_traces}")
    ref = cache.run_info(first.reference_run)
    spec = SamplingSpec.from_dict(ref["sampling"]) if ref["sampling"] else None
    problems = cache.load_run(first.reference_run)[: first.limit]
    if first.engine == "replay":  # any cached run (imported too): its traces are what the stand-in streams
        spec, problems = replay_inputs(spec, problems)
    elif spec is None or ref["source"] != "generate":
        raise DPError(f"run '{first.reference_run}' was not generated by dp generate; dp live needs its seeds "
                      "and settings (or use --engine replay, which streams the cached traces)")
    jobs = []
    for s in settings:  # every check before the engine starts
        policy = equip(make_policy(s.policy, **s.params, accounting="concurrent" if s.mode == "keep" else "paper"))
        driver_for(policy)  # a policy without a live form is a one-line error
        judge = load_judge(s.judge, seed=s.seed) if policy.needs_judge else None
        done = resumable(cache, s)
        lives = [read_problem(cache, s.live_run, pt.problem.problem_id, done[pt.problem.problem_id])
                 for pt in problems if done and pt.problem.problem_id in done]
        wall = cache.run_info(s.live_run)["settings"].get("live_wall", 0.0) if done else 0.0
        job = _Job(s, policy, judge, done, lives, wall)
        job.warnings = prune_warnings(policy, int(ref["n"]), spec.max_tokens, s.rule)
        seen = in_sample_warning(judge, s.reference_run, [pt.problem.question for pt in problems])
        job.judge_in_sample = seen is not None
        job.warnings += [f"{s.policy}: {seen}"] if seen else []
        _warn(job.warnings)
        jobs.append(job)
    timing = {"full_seconds": 0.0, "full_tokens": 0, "full_window": (None, None)}
    engine_settings: dict = {}

    async def window(run_one, todo, on_done=None) -> tuple[float, int]:
        """Run `run_one(pt, admission)` for every problem, admitted by traces in flight;
        (wall seconds, most traces in flight at once)."""
        adm = Admission(engine_settings["max_traces_in_flight"], first.max_in_flight)
        seconds = await adm.run(todo, lambda pt: run_one(pt, adm), on_done)
        return seconds, adm.peak_traces

    async def run_job(engine, job: _Job) -> None:
        s = job.s
        rule = s.rule
        if job.done is None:
            with cache.transaction():
                cache.create_run(RunInfo(
                    run=s.live_run, model=ref["model"], engine=engine.name, tokenizer=ref["tokenizer"],
                    source="live", dataset=ref["dataset"], n=ref["n"], seed=ref["seed"],
                    sampling=ref["sampling"], prompt_template=ref["prompt_template"],
                    settings={"reference_run": s.reference_run, **dataclasses.asdict(s),
                              "engine": engine.settings(), "engine_kind": s.engine, "complete": False, "done": {}},
                ), replace=s.replace)
                cache.add_problems(s.live_run, [p.problem for p in problems])
        elif progress:
            print(f"resuming live run '{s.live_run}': {len(job.lives)} of {len(problems)} problems already done",
                  flush=True)
        t0 = time.perf_counter()

        def stored(pt, live: ProblemLive) -> None:
            store_problem(cache, s.live_run, live, wall=job.done_wall + time.perf_counter() - t0)
            job.lives.append(live)
            if progress:
                print(f"[{len(job.lives)}/{len(problems)}] {s.policy} {pt.problem.problem_id}: kept "
                      f"{int(live.finished.sum())}/{pt.n}, {int(live.tokens.sum())} tokens, {live.seconds:.1f} s",
                      flush=True)

        todo = [pt for pt in problems if not (job.done and pt.problem.problem_id in job.done)]
        started, cpu = time.time(), time.process_time()
        seconds, job.peak_traces = await window(
            lambda pt, adm: run_problem(engine, job.policy, job.judge, rule, pt.problem,
                                        [int(x) for x in pt.seeds], spec, s.mode, s.seed, adm), todo, stored)
        job.live_seconds = job.done_wall + seconds
        job.window, job.cpu_seconds = (started, time.time()), time.process_time() - cpu

    async def session() -> None:
        # one event loop for the whole session: AsyncLLM's output handler lives in it
        if first.engine == "replay":
            from dp.generate.replay_engine import replay_stream_engine

            engine = replay_stream_engine(cache, first.reference_run, rate=first.replay_rate)
        else:
            engine = StreamEngine(ref["model"], dtype=first.dtype, stat_loggers=stat_loggers)
        engine_settings.update(engine.settings())
        batch = engine_settings.get("max_num_seqs") or 4 * int(ref["n"])  # replay stand-in: no batch of its own
        engine_settings["max_traces_in_flight"] = first.max_traces or batch
        try:
            for job in jobs:
                await run_job(engine, job)
            if any(j.s.compare for j in jobs):  # the same traces in full, same window, for the wall time
                def counted(pt, full):
                    timing["full_tokens"] += int(full.tokens.sum())

                rule = first.rule
                started = time.time()
                timing["full_seconds"], _ = await window(
                    lambda pt, adm: run_problem(engine, Consensus(), None, rule, pt.problem,
                                                [int(x) for x in pt.seeds], spec, "keep", first.seed, adm),
                    problems, counted)
                timing["full_window"] = (started, time.time())
        finally:
            engine.close()

    asyncio.run(session())
    return [_finish(cache, job, ref, problems, engine_settings, timing) for job in jobs]


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr, flush=True)


def replay_inputs(spec, problems: list) -> tuple:
    """Sampling settings and seeds for the replay engine: the run's own, or (imported runs) the run's N and
    longest trace, and per-trace seeds that name the cached traces."""
    from dp.generate.replay_engine import replay_seed
    from dp.generate.sampling import SamplingSpec

    if spec is None:
        spec = SamplingSpec(n=max(p.n for p in problems), max_tokens=max(1, max(int(p.lengths.max()) for p in problems)))
    out = []
    for pt in problems:
        if (pt.seeds < 0).any():
            seeds = np.array([s if s >= 0 else replay_seed(pt.problem.problem_id, int(i))
                              for s, i in zip(pt.seeds, pt.index, strict=True)], dtype=np.int64)
            pt = dataclasses.replace(pt, seeds=seeds)
        out.append(pt)
    return spec, out


def _finish(cache: Cache, job: _Job, ref: dict, problems: list, engine_settings: dict, timing: dict) -> dict:
    """The output of one policy's live run, stored on the run (complete)."""
    s, lives, policy = job.s, job.lives, job.policy
    rule = s.rule
    measured = measured_warnings(policy, lives, rule)
    _warn(measured)
    out = {
        "live_run": s.live_run, "reference_run": s.reference_run, "policy": s.policy, "mode": s.mode,
        "accounting": "concurrent" if s.mode == "keep" else "paper", "problems": len(lives), "n": int(ref["n"]),
        "live_tokens": int(sum(int(lv.tokens.sum()) for lv in lives)),
        "live_seconds": job.live_seconds,
        "problem_seconds_mean": float(np.mean([lv.seconds for lv in lives])) if lives else None,
        "max_problems_in_flight": s.max_in_flight, "max_traces_in_flight": engine_settings["max_traces_in_flight"],
        "peak_traces_in_flight": job.peak_traces, "dtype": engine_settings.get("dtype"),
        **dict(zip(("live_accuracy", "graded_problems"), graded_accuracy([lv.correct for lv in lives]),
                   strict=True)),  # over the problems with a gold answer
        "judge_seconds": float(sum(lv.judge_seconds for lv in lives)),
        "process_cpu_seconds": job.cpu_seconds, "live_window": list(job.window),
        "judge_pairs": int(sum(lv.judge_pairs for lv in lives)),
        "reference_tokens": int(sum(int(p.lengths.sum()) for p in problems)),
        "seed": s.seed, "truncate": str(rule), "params": dict(getattr(policy, "params_dict", {})),
        "judge_in_sample": job.judge_in_sample, "warnings": job.warnings + measured,
    }
    if s.compare:
        sim_policy = equip(make_policy(s.policy, **s.params, accounting=out["accounting"]))
        contexts = build_contexts(cache, s.reference_run, rule, job.judge, limit=s.limit,
                                  confidence=getattr(sim_policy, "needs_confidence", False))
        out.update(compare(contexts, sim_policy, lives, s.seed))
        out.update(full_generation_seconds=timing["full_seconds"], full_tokens=timing["full_tokens"],
                   full_generation_window=list(timing["full_window"]),
                   **cuts(out, timing["full_tokens"], timing["full_seconds"]))
    settings = cache.run_info(s.live_run)["settings"]
    cache.update_run_settings(s.live_run, {
        **settings, "complete": True, "result": {k: v for k, v in out.items() if k != "simulated_per_problem"},
        "compare_with": s.reference_run, "simulated_per_problem": out.get("simulated_per_problem", {})})
    return out


def cuts(out: dict, full_tokens: int, full_seconds: float) -> dict:
    """Token cut, wall-time cut and their ratio against full generation of the same traces."""
    token_cut = 1 - out["live_tokens"] / full_tokens if full_tokens else None
    wall_cut = 1 - out["live_seconds"] / full_seconds if full_seconds else None
    ratio = wall_cut / token_cut if token_cut and wall_cut is not None else None
    return {"token_cut": token_cut, "wall_cut": wall_cut, "wall_to_token_cut": ratio}
