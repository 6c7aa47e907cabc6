"""Generation on a Ray cluster: R engine replicas as Ray actors, one driver that writes.

`ReplicaPool` starts R actors (`_Replica`), each holding its own engine (vLLM with
`tensor_parallel_size` GPUs on a GPU cluster, one CPU engine here), and
`ReplicaPool.run` feeds them work units dynamically: one unit is the missing traces
of one problem (split at `batch_traces`), each idle replica gets the next unit, so a
slow replica never holds the others. Finished units stream back to the driver,
which alone calls `sink` (the CLI's atomic per-batch cache write), so the cache
has one writer as in a single-process run. Jobs, prompts and seeds come from
`dp.generate.runner.build_jobs`, the same as the single-process runner: on the fp32
CPU engine a run with R replicas stores exactly the traces of a run with one.

If a replica dies (its process killed, its node lost) the unit it held is put back
at the front of the queue for the others and a line is reported; the run ends with
exactly the missing traces, each written once. A unit whose replica dies
`max_unit_failures` times (2 by default: it is retried once) is taken to be what
kills them: the run stops with one line naming its problem and traces, and the
other replicas live. If the driver dies, the cache holds
every unit written so far and the same command resumes from it.

Not here: storage (the sink), prompts and seeds (runner/prompts/seeds), engine
internals (engines). `ray` is an optional extra, imported only when a pool starts.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dp.errors import DPError
from dp.generate.engines import Job
from dp.generate.runner import DEFAULT_BATCH_TRACES, build_jobs, run_stats, shard_problems
from dp.generate.sampling import SamplingSpec
from dp.types import Problem, TraceRecord

RAY_EXTRA = "pip install -e '.[ray]'"
MAX_UNIT_FAILURES = 2  # replica deaths while holding one unit before the run stops on it


def require_ray():
    """The `ray` module, or a one-line DPError naming the extra that provides it."""
    try:
        import ray
    except ImportError:
        raise DPError(f"--replicas needs ray, an optional extra: {RAY_EXTRA}") from None
    return ray


def check_replicas(replicas: int | None, address: str | None) -> None:
    """The command line's --replicas / --ray-address, checked before anything starts."""
    if replicas is None:
        raise DPError("--ray-address needs --replicas R")
    if replicas < 1:
        raise DPError(f"--replicas must be >= 1, got {replicas}")
    require_ray()


class _Replica:
    """One engine inside a Ray actor process. Knows nothing about the queue or the cache."""

    def __init__(self, kind: str, model: str, engine_kw: dict):
        from dp.generate.engines import make_engine

        self.engine = make_engine(kind, model, **engine_kw)

    def info(self) -> dict:
        import socket

        return {"name": self.engine.name, "settings": self.engine.settings(), "pid": os.getpid(),
                "host": socket.gethostname()}

    def generate(self, jobs: list[Job], spec: SamplingSpec) -> list[TraceRecord]:
        return list(self.engine.generate(jobs, spec))

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close:
            close()


@dataclass
class _Unit:
    """Consecutive jobs of one problem, sent to one replica at a time."""

    jobs: list[Job]
    tries: int = 0
    deaths: int = 0  # replicas that died while holding it

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(j.problem.problem_id, j.index) for j in self.jobs]

    def describe(self) -> str:
        """"problem 'p1' traces 0-3" (or "traces 0, 2, 5" when not consecutive)."""
        idx = [j.index for j in self.jobs]
        consecutive = idx == list(range(idx[0], idx[0] + len(idx)))
        span = f"{idx[0]}-{idx[-1]}" if consecutive and len(idx) > 1 else ", ".join(map(str, idx))
        return f"problem '{self.jobs[0].problem.problem_id}' trace{'s' if len(idx) > 1 else ''} {span}"


def work_units(jobs: list[Job], batch_traces: int) -> list[_Unit]:
    """The jobs grouped by problem (in order), each group cut into slices of `batch_traces`."""
    if batch_traces < 1:
        raise DPError(f"batch_traces must be >= 1, got {batch_traces}")
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.problem.problem_id, []).append(job)
    return [_Unit(g[a : a + batch_traces]) for g in groups.values() for a in range(0, len(g), batch_traces)]


def _one_line(exc: BaseException) -> str:
    """The error's type and first sentence (Ray's messages run to paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _init_error(exc: BaseException) -> str:
    """Why an actor's engine did not start: the last line of Ray's report (the raised error)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ReplicaPool:
    """R engine replicas as Ray actors; `run` samples a run's missing traces on them.

    Without `address` a local Ray instance is started (and stopped by `close`); with
    one (e.g. "auto" or "10.0.0.1:6379") the driver joins that cluster. Each actor
    asks Ray for `tensor_parallel_size` GPUs when the cluster has GPUs, else 1 CPU.
    Looks like an Engine to the CLI (`name`, `settings()`, `close()`), except that
    generation goes through `run`, not `generate`.
    """

    replica_class = _Replica  # what each actor holds (tests put a scripted engine here)

    def __init__(self, replicas: int, kind: str = "vllm", model: str = "smollm2-135m",
                 engine_kw: dict | None = None, address: str | None = None,
                 tensor_parallel_size: int = 1, report: Callable[[str], None] = _report):
        if not isinstance(replicas, int) or replicas < 1:
            raise DPError(f"replicas must be >= 1, got {replicas}")
        ray = require_ray()
        from dp.models import load_tokenizer, resolve_model

        self.ray, self.report, self.address = ray, report, address
        self.model_name = str(model)
        self.tokenizer = load_tokenizer(str(resolve_model(model)))  # the engines' own prompt tokenizer
        self._started_ray = False
        self.actors: list = []
        self.pids: list[int] = []
        try:
            if not ray.is_initialized():
                opts = dict(include_dashboard=False, log_to_driver=False, logging_level="warning")
                if address:
                    ray.init(address=address, **opts)
                else:
                    ray.init(num_cpus=max(replicas, os.cpu_count() or 1), **opts)
                self._started_ray = True
            have = ray.cluster_resources()
            gpus = have.get("GPU", 0) > 0
            res = {"num_gpus": tensor_parallel_size} if gpus else {"num_cpus": 1}
            per = next(iter(res.values()))
            key = "GPU" if gpus else "CPU"
            if replicas * per > have.get(key, 0):  # Ray would wait for them forever
                raise DPError(f"{replicas} replicas need {replicas * per:g} {key}s; the Ray cluster has "
                              f"{have.get(key, 0):g}")
            kw = dict(engine_kw or {})
            if tensor_parallel_size > 1:  # the actor holds the GPUs; vLLM's own workers stay inside it
                kw.update(tensor_parallel_size=tensor_parallel_size, distributed_executor_backend="mp")
            cls = ray.remote(max_restarts=0, max_task_retries=0, **res)(self.replica_class)
            self.actors = actors = [cls.remote(kind, model, kw) for _ in range(replicas)]
            infos, failed = [], []
            for i, a in enumerate(actors):
                try:
                    infos.append((a, ray.get(a.info.remote())))
                except Exception as exc:  # noqa: BLE001 - a replica that cannot start is reported
                    failed.append(f"replica {i} failed to start: {_init_error(exc)}")
            if not infos:
                raise DPError(f"none of the {replicas} replicas started; {failed[0]}")
            for line in failed:
                report(line)
            for a in actors:
                if all(a is not b for b, _ in infos):
                    ray.kill(a)
            self.actors = [a for a, _ in infos]
            self.pids = [info["pid"] for _, info in infos]
            self.hosts = [info["host"] for _, info in infos]
            self.name = infos[0][1]["name"]
            self._engine_settings = infos[0][1]["settings"]
        except BaseException:
            self.close()
            raise

    def settings(self) -> dict:
        return {**self._engine_settings, "replicas": len(self.actors), "ray_address": self.address}

    def run(
        self, problems: Sequence[Problem], spec: SamplingSpec, done: set[tuple[str, int]],
        sink: Callable[[list[TraceRecord]], None], shard: tuple[int, int] = (0, 1),
        progress: bool = True, batch_traces: int = DEFAULT_BATCH_TRACES,
        on_event: Callable[[str, int, _Unit], None] | None = None,
        max_unit_failures: int = MAX_UNIT_FAILURES,
    ) -> dict:
        """Sample every missing trace of this shard on the replicas; sink(records) per unit.

        `on_event(kind, replica, unit)` is called with kind "dispatch" or "done" (for
        tests and monitoring). Returns the runner's stats plus `replicas` (at the start)
        and `replica_failures`. Raises DPError when every replica has died, or when
        `max_unit_failures` replicas died holding the same unit (the others are spared).
        """
        if max_unit_failures < 1:
            raise DPError(f"max_unit_failures must be >= 1, got {max_unit_failures}")
        mine = shard_problems(problems, shard)
        ids = [p.problem_id for p in mine]
        if len(set(ids)) != len(ids):
            raise DPError("problem ids are not unique")
        jobs = build_jobs(self.tokenizer, mine, spec, done)
        skipped = len(mine) * spec.n - len(jobs)
        queue = deque(work_units(jobs, batch_traces))
        alive = dict(enumerate(self.actors))  # replica index -> actor
        inflight: dict = {}  # ObjectRef -> (replica index, unit)
        stop: str | None = None  # why the run stops once the units in flight are back
        written: set[tuple[str, int]] = set()
        traces = tokens = failures = 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), unit="trace", desc=f"generate x{len(alive)} replicas")
        say = bar.write if bar is not None else self.report
        t0 = time.perf_counter()
        try:
            while (queue and stop is None) or inflight:
                busy = {r for r, _ in inflight.values()}
                for r in [r for r in alive if r not in busy]:
                    if not queue or stop is not None:
                        break
                    unit = queue.popleft()
                    unit.tries += 1
                    inflight[alive[r].generate.remote(unit.jobs, spec)] = (r, unit)
                    if on_event:
                        on_event("dispatch", r, unit)
                if not inflight:
                    raise DPError(f"all {len(self.actors)} replicas died; {sum(len(u.jobs) for u in queue)} "
                                  "traces not generated (run the same command again to resume)")
                [ref], _ = self.ray.wait(list(inflight), num_returns=1)
                r, unit = inflight.pop(ref)
                try:
                    records = self.ray.get(ref)
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError) as exc:
                    failures += 1
                    unit.deaths += 1
                    alive.pop(r, None)
                    if unit.deaths >= max_unit_failures and stop is None:  # finish the others' units, then stop
                        stop = (f"{unit.describe()} took down {unit.deaths} replicas (the last, pid "
                                f"{self.pids[r]}: {_one_line(exc)}); the run stopped with")
                        continue
                    queue.appendleft(unit)
                    say(f"replica {r} (pid {self.pids[r]}) failed: {_one_line(exc)}; its {len(unit.jobs)} "
                        f"traces are re-queued, {len(alive)} replicas left")
                    continue
                except self.ray.exceptions.RayTaskError as exc:  # the engine refused the work itself
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), DPError) else None
                    raise (cause or DPError(f"replica {r}: {_one_line(exc)}")) from None
                got = [(rec.problem_id, rec.index) for rec in records]
                if sorted(got) != sorted(unit.keys) or written.intersection(got):
                    raise RuntimeError(f"replica {r} returned traces {got[:4]}... for jobs {unit.keys[:4]}...")
                sink(records)
                written.update(got)
                traces += len(records)
                tokens += sum(rec.n_tokens for rec in records)
                if on_event:
                    on_event("done", r, unit)
                if bar is not None:
                    bar.update(len(records))
                    bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):.0f}",
                                    replicas=len(alive))
            if stop is not None:
                raise DPError(f"{stop} {len(alive)} replicas alive (the traces written so far are kept; "
                              "a rerun resumes)")
        finally:
            if bar is not None:
                bar.close()
        return {**run_stats(traces, tokens, t0, skipped), "replicas": len(self.actors),
                "replica_failures": failures}

    def close(self) -> None:
        """Stop every engine and actor, then the local Ray instance if this pool started it."""
        ray, actors, self.actors = self.ray, self.actors, []
        if actors:
            try:
                ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=60)
            except Exception:  # noqa: BLE001 - best effort: the actors are killed next
                pass
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001
                    pass
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            self._started_ray = False
