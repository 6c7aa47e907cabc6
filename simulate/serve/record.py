"""`dp serve --record CACHE`: every served request becomes one problem of a `serve` run.

The run (`source = serve`) is registered on the first request; each request is
then one problem (its id is the request id, no gold answer) whose traces, live
decisions and summary are written by the live runner's own writer
(`dp.simulate.live.run._store`), plus the request's provenance under
`settings.requests[problem_id]`: its sampling settings (with the request seed),
policy, settings, judge, truncation rule and mode; the per-trace seeds are in the
traces. `dp simulate --run serve-...` then replays the recorded traffic.

The cache is opened for each write only (like `dp generate`'s batches), so other
`dp` commands can read it while the server runs. It never generates.
"""

from __future__ import annotations

import dataclasses

from dp.cache.store import Cache, RunInfo
from dp.errors import DPError
from dp.simulate.live.problem import ProblemLive
from dp.simulate.live.run import store_problem


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


def record(spec: RunSpec, request: dict, live: ProblemLive) -> None:
    """Store one answered request (all or nothing): the problem, its traces and live rows, its provenance."""
    from dp.types import Problem

    problem: Problem = request.pop("problem")
    with Cache(spec.path, write=True) as cache, cache.transaction():
        if not cache.has_run(spec.run):
            cache.create_run(RunInfo(
                run=spec.run, model=spec.model, engine=spec.engine, tokenizer=spec.tokenizer, source="serve",
                dataset="serve", n=spec.n, seed=spec.seed, sampling=spec.sampling,
                prompt_template=spec.prompt_template, settings={**spec.settings, "requests": {}, "done": {}}))
        cache.add_problems(spec.run, [problem])
        store_problem(cache, spec.run, live)
        settings = cache.run_info(spec.run)["settings"]
        settings["done"][problem.problem_id]["correct"] = None  # no gold answer for served requests
        settings.setdefault("requests", {})[problem.problem_id] = request
        cache.update_run_settings(spec.run, settings)
