"""The generation driver: problems x spec.n -> jobs -> engine batches -> sink.

`generate_run` derives each trace's seed from (run seed, problem id, index), skips
the (problem_id, index) pairs in `done`, keeps only this shard's problems, and
hands each finished batch of records to `sink` (typically a cache writer wired in
by the CLI), so a killed run loses at most one batch and a resumed run produces
exactly the traces of an uninterrupted one. It never stores anything itself and
never imports dp.cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from dp.errors import DPError
from dp.generate.engines import Engine, Job
from dp.generate.prompts import build_prompt
from dp.generate.sampling import SamplingSpec
from dp.seeds import trace_seed
from dp.types import Problem, TraceRecord

DEFAULT_BATCH_TRACES = 64


def shard_problems(problems: Sequence[Problem], shard: tuple[int, int] = (0, 1)) -> list[Problem]:
    """The problems of shard i of n: those at positions p with p % n == i."""
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise DPError(f"shard must be i/n with 0 <= i < n, got {i}/{n}")
    return [p for pos, p in enumerate(problems) if pos % n == i]


def build_jobs(
    tokenizer, problems: Iterable[Problem], spec: SamplingSpec, done: set[tuple[str, int]] = frozenset(),
) -> list[Job]:
    """One Job per (problem, index in range(spec.n)) not in `done`, problem by problem."""
    jobs = []
    for problem in problems:
        todo = [i for i in range(spec.n) if (problem.problem_id, i) not in done]
        if not todo:
            continue
        prompt = build_prompt(tokenizer, problem)
        jobs += [Job(problem, i, trace_seed(spec.seed, problem.problem_id, i), prompt) for i in todo]
    return jobs


def batches(jobs: list[Job], batch_traces: int) -> list[list[Job]]:
    """Consecutive slices of at most `batch_traces` jobs (a problem may span two)."""
    if batch_traces < 1:
        raise DPError(f"batch_traces must be >= 1, got {batch_traces}")
    return [jobs[a : a + batch_traces] for a in range(0, len(jobs), batch_traces)]


def generate_run(
    engine: Engine,
    problems: Sequence[Problem],
    spec: SamplingSpec,
    done: set[tuple[str, int]],
    sink: Callable[[list[TraceRecord]], None],
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    batch_traces: int = DEFAULT_BATCH_TRACES,
) -> dict:
    """Sample every missing trace of this shard; sink(records) after each batch.

    Returns {"traces", "tokens", "seconds", "tokens_per_s", "skipped"}: traces and
    generated tokens of this call, wall time of the engine plus sink, and the
    number of traces skipped because they were in `done`.
    """
    mine = shard_problems(problems, shard)
    ids = [p.problem_id for p in mine]
    if len(set(ids)) != len(ids):
        raise DPError("problem ids are not unique")
    jobs = build_jobs(engine.tokenizer, mine, spec, done)
    skipped = len(mine) * spec.n - len(jobs)
    traces = tokens = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), unit="trace", desc=f"generate {shard[0]}/{shard[1]}")
    t0 = time.perf_counter()
    try:
        for batch in batches(jobs, batch_traces):
            records = list(engine.generate(batch, spec))
            if len(records) != len(batch):
                raise RuntimeError(f"engine returned {len(records)} records for {len(batch)} jobs")
            sink(records)
            traces += len(records)
            tokens += sum(r.n_tokens for r in records)
            if bar is not None:
                bar.update(len(records))
                bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        if bar is not None:
            bar.close()
    return run_stats(traces, tokens, t0, skipped)


def run_stats(traces: int, tokens: int, t0: float, skipped: int) -> dict:
    """What a generation reports: traces and tokens written, seconds since `t0`, throughput."""
    seconds = time.perf_counter() - t0
    return {
        "traces": traces,
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 and tokens else 0.0,
        "skipped": skipped,
    }
