"""`dp serve --record CACHE`: every served request becomes one problem of a `serve` run.

The run (`source = serve`) is registered on the first request; each request is
then one problem (its id is the request id, no gold answer) whose traces and live
decisions are written by the live runner's own writer (`dp.simulate.live.run._store`),
plus, in the problem's own row of `problem_settings` (`read_requests`), the request's
provenance under "request": its sampling settings (with the request seed), policy,
settings, judge, truncation rule and mode, and the live summary under "done"
(seconds, judge seconds and pairs; `correct` is None: no gold). Recording one
request writes that request only, never the earlier ones again. The per-trace seeds
are in the traces. `dp simulate --run serve-...` then replays the recorded traffic.

The cache is opened for each write only (like `dp generate`'s batches), so other
`dp` commands can read it while the server runs. A `Recorder` is the server's one
writer: requests are queued and written one at a time in the order they were
answered; while another command holds the cache (a `dp simulate` replay holds its
writer for the whole replay) the writer waits and tries again, for as long as it
takes, so a served request is never dropped for a busy cache; `close` waits until
the queue is written. The answers of a request are grouped into classes before the
cache is opened, by a `dp.grading.Grader` (a worker process with a time limit), so a
pathological answer can neither hang the writer nor hold the cache. It never generates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys

import numpy as np

from dp.cache.live import read_problem_settings, write_problem_settings
from dp.cache.lock import CacheLocked, lock_wait
from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.simulate.live.problem import ProblemLive
from dp.simulate.live.store import live_summary, store_problem, stored_records


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The recorded run: where, under which name, and what the server was started with."""

    path: str
    run: str
    model: str
    engine: str
    tokenizer: str
    prompt_template: str
    sampling: dict  # the server's default SamplingSpec (each request's own is in settings.requests)
    n: int
    seed: int
    settings: dict


def check_target(path: str, run: str, model: str) -> None:
    """At start-up: the cache opens for writing and `run` is new or an earlier serve run of `model`
    (then new requests are added to it)."""
    with Cache(path, write=True) as cache:
        if cache.has_run(run):
            info = cache.run_info(run)
            if info["source"] != "serve" or info["model"] != model:
                raise DPError(f"run '{run}' in {path} exists and is not a serve run of {model}; "
                              "choose another --record-run")


def answer_classes(live: ProblemLive, kind, grader) -> np.ndarray:
    """Answer classes of a request's stored traces (`stored_records`) by index, as the cache would group
    them, graded by `grader` (`dp.grading.Grader`: bounded time)."""
    from dp.answers import extract_answer

    records = sorted(stored_records(live), key=lambda r: r.index)
    return grader.classes([extract_answer(r.text, kind) for r in records], kind)


def record(spec: RunSpec, request: dict, live: ProblemLive, wait: float | None = None,
           classes: np.ndarray | None = None) -> None:
    """Store one answered request (all or nothing): the problem, its traces and live rows, its provenance.
    Waits up to `wait` seconds (default DP_LOCK_WAIT) for another process's lock, then `CacheLocked`.
    `classes`: the traces' answer classes (`answer_classes`); None = grouped here, in this thread."""
    from dp.types import Problem

    request = dict(request)
    problem: Problem = request.pop("problem")
    with Cache(spec.path, write=True, wait=wait) as cache, cache.transaction():
        if not cache.has_run(spec.run):
            cache.create_run(RunInfo(
                run=spec.run, model=spec.model, engine=spec.engine, tokenizer=spec.tokenizer, source="serve",
                dataset="serve", n=spec.n, seed=spec.seed, sampling=spec.sampling,
                prompt_template=spec.prompt_template, settings=dict(spec.settings)))
        cache.add_problems(spec.run, [problem])
        store_problem(cache, spec.run, live, classes=classes, summary=False)
        done = {**live_summary(live), "correct": None}  # no gold answer for served requests
        write_problem_settings(cache, spec.run, problem.problem_id, {"request": request, "done": done})


def read_requests(cache: Cache, run: str) -> dict[str, dict]:
    """{request id: {"request": provenance, "done": live summary}} of a recorded serve run; runs recorded
    before requests had their own rows keep them in the run's settings ("requests", "done")."""
    out = read_problem_settings(cache, run)
    old = cache.run_info(run)["settings"]
    for pid, req in old.get("requests", {}).items():
        out.setdefault(pid, {"request": req, "done": old.get("done", {}).get(pid, {})})
    return out


class Recorder:
    """The server's one cache writer: `submit` queues a request, a background task writes the queue in order."""

    def __init__(self, spec: RunSpec, write=record, grader=None):
        from dp.grading import Grader

        self.spec, self._write = spec, write
        self.grader = grader if grader is not None else Grader()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.written = 0
        self.waiting_since: float | None = None  # monotonic time the writer began waiting for a busy cache

    @property
    def pending(self) -> int:
        """Requests answered and not yet written."""
        return 0 if self._queue is None else self._queue.qsize() + (self.waiting_since is not None)

    def submit(self, request: dict, live: ProblemLive) -> asyncio.Future:
        """Queue one request; the future is done once it is written (or failed for another reason than a
        busy cache, with that error)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((request, live, done))
        return done

    async def _run(self) -> None:
        import time

        while True:
            request, live, done = await self._queue.get()
            try:
                # graded once, before the cache is opened, in bounded time (a worker process)
                classes = await asyncio.to_thread(answer_classes, live, request["problem"].kind, self.grader)
                while True:
                    try:
                        await asyncio.to_thread(self._write, self.spec, request, live, lock_wait(), classes)
                        break
                    except CacheLocked as e:  # another command holds the cache: wait for it, never drop
                        if self.waiting_since is None:
                            self.waiting_since = time.monotonic()
                            print(f"warning: {e}; {self.pending} request(s) queued, still waiting", file=sys.stderr,
                                  flush=True)
                        await asyncio.sleep(0.2)
                if self.waiting_since is not None:
                    print(f"recording resumed after {time.monotonic() - self.waiting_since:.0f} s", file=sys.stderr,
                          flush=True)
                    self.waiting_since = None
                self.written += 1
                if not done.done():
                    done.set_result(True)
            except Exception as e:  # noqa: BLE001 - reported on the request; the writer goes on
                self.waiting_since = None
                if not done.done():
                    done.set_exception(e)
            finally:
                self._queue.task_done()

    async def close(self) -> None:
        """Wait until every queued request is written, then stop the writer."""
        if self._queue is None:
            return
        if self.pending:
            print(f"waiting to record {self.pending} request(s) in {self.spec.path}", file=sys.stderr, flush=True)
        await self._queue.join()
        self._task.cancel()
        self.grader.close()
