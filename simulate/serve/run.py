"""Running `dp serve`: the engine, the app on uvicorn, draining and shutting down.

`serve` checks the address and the record target first (one-line errors before
the engine loads), starts the `StreamEngine` inside the server's event loop, loads
the default judge, and runs uvicorn until SIGTERM / Ctrl-C: then uvicorn stops
accepting connections and waits for the requests in flight (`drain_timeout`),
and the engine is shut down on every exit path. A drained stop is a normal exit
(0), not an interrupt. The app itself is `serve_app`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time

from dp.errors import DPError
from dp.simulate.serve.app import (
    MAX_MODEL_LEN,
    MAX_PROMPT_TOKENS,
    Served,
    ServeSettings,
    create_app,
)
from dp.simulate.serve.request import ServerDefaults


def check_port(host: str, port: int) -> None:
    """Fail before the engine loads when the address is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise DPError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(settings: ServeSettings, on_ready=None, make_engine=None) -> dict:
    """Start the engine and serve until SIGTERM / Ctrl-C; returns a summary once drained and shut down.
    `make_engine()` (called inside the server's loop) replaces the vLLM engine, e.g. the trace-driven
    stand-in of `dp.generate.replay_engine`."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # a drained stop is a normal exit, not an interrupt

    check_port(settings.host, settings.port)
    run = settings.record_run or f"serve-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    if settings.record:
        from dp.simulate.serve.record import check_target

        check_target(settings.record, run, settings.defaults.model)
    record_spec = None
    summary: dict = {}

    async def main() -> None:
        nonlocal record_spec
        from dp.generate.stream import StreamEngine

        engine = make_engine() if make_engine is not None else StreamEngine(
            settings.defaults.model, max_prompt_tokens=MAX_PROMPT_TOKENS, max_model_len=MAX_MODEL_LEN)
        try:
            if settings.record:
                record_spec = _record_spec(settings, engine, run)
            served = Served(engine, settings, record_spec)
            if served.recorder is not None:  # the answer-grading worker, started before the first request
                await asyncio.to_thread(served.recorder.grader.start)
            if make_needs_judge(served.defaults):
                await served.judge(served.defaults.judge)
            config = uvicorn.Config(create_app(served), host=settings.host, port=settings.port, lifespan="off",
                                    log_level="info" if settings.verbose else "warning",
                                    access_log=settings.verbose,
                                    timeout_graceful_shutdown=settings.drain_timeout)
            server = _Server(config)
            if on_ready is not None:
                asyncio.get_running_loop().create_task(_when_started(server, on_ready, record_spec))
            await server.serve()
            if served.recorder is not None:  # every answered request is written before the server exits
                await served.recorder.close()
            summary.update(answered=served.answered, in_flight_at_exit=served.in_flight,
                           run=record_spec.run if record_spec else None)
        finally:
            engine.close()

    asyncio.run(main())
    return summary


def make_needs_judge(d: ServerDefaults) -> bool:
    from dp.simulate.policies.registry import make_policy

    return bool(make_policy(d.policy, **d.params).needs_judge)


async def _when_started(server, on_ready, record_spec) -> None:
    while not server.started and not server.should_exit:
        await asyncio.sleep(0.05)
    if server.started:
        on_ready(record_spec.run if record_spec else None)


def _record_spec(settings: ServeSettings, engine, run: str):
    from dp.generate.prompts import PROMPT_TEMPLATE_ID, prompt_template
    from dp.generate.sampling import SamplingSpec
    from dp.simulate.serve.record import RunSpec

    d = settings.defaults
    return RunSpec(
        path=settings.record, run=run, model=d.model, engine=engine.name, tokenizer=d.model,
        prompt_template=f"{PROMPT_TEMPLATE_ID}: {prompt_template(engine.tokenizer)}",
        sampling=SamplingSpec(n=d.n, max_tokens=d.max_tokens, temperature=d.temperature, top_p=d.top_p,
                              seed=d.seed).to_dict(),
        n=d.n, seed=d.seed,
        settings={"server": {**dataclasses.asdict(d), "max_concurrent": settings.max_concurrent},
                  "engine": engine.settings(), "trace_seeds": "dp.simulate.serve.request.trace_seeds(seed, n)"},
    )
