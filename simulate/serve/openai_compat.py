"""What OpenAI-compatible clients expect of `dp serve` beyond one JSON answer: API keys and streaming.

- `authorized`: with `--api-key KEY` (or DP_API_KEY) every `/v1/...` route needs
  `Authorization: Bearer KEY`, as `vllm serve` has it; other routes (`/health`,
  `/metrics`) stay open. A refused request is answered 401 in the OpenAI error shape.
- `events`: a `stream: true` request answered as server-sent events in OpenAI's
  `chat.completion.chunk` format. The traces must vote before the answer is known,
  so the stream is: the assistant role at once, SSE comments (`: waiting`) while
  the traces run, then the chosen trace's text in one chunk, a last chunk with
  `finish_reason`, `usage` and the `dp` field, and `data: [DONE]`. A request
  that fails after the stream began ends with one `data: {"error": ...}` event.

Nothing here runs the engine or parses requests (`serve_app`, `serve_request`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable

from dp.simulate.serve.request import ServeError, ServeRequest

KEEPALIVE_SECONDS = 10.0


def authorized(path: str, header: str | None, key: str | None) -> bool:
    """Whether a request to `path` with this Authorization header may go on."""
    if not key or not path.startswith("/v1"):
        return True
    given = (header or "").strip()
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), key.encode())


def unauthorized() -> ServeError:
    return ServeError(401, "invalid or missing API key: send 'Authorization: Bearer KEY' (dp serve --api-key)",
                      code="invalid_api_key")


def chunk(req: ServeRequest, model: str, delta: dict, finish: str | None = None, **extra) -> str:
    """One server-sent event holding a chat.completion.chunk."""
    body = {"id": req.request_id, "object": "chat.completion.chunk", "created": req.created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n"


async def events(req: ServeRequest, model: str, task: asyncio.Future,
                 on_answer: Callable[[dict], None], on_error: Callable[[ServeError], None]) -> AsyncIterator[str]:
    """The SSE stream of one request whose answer `task` computes (shielded: a client that hangs up
    does not stop its traces)."""
    yield chunk(req, model, {"role": "assistant", "content": ""})
    while not task.done():
        try:
            await asyncio.wait_for(asyncio.shield(task), KEEPALIVE_SECONDS)
        except TimeoutError:
            yield ": waiting for the traces to vote\n\n"
        except Exception:  # noqa: BLE001 - read from the task below
            break
    try:
        if task.cancelled():
            raise ServeError(503, "the request was cancelled (the server is shutting down)", code="cancelled")
        out = task.result()
    except Exception as e:  # noqa: BLE001 - the stream has begun: the error goes in it
        err = e if isinstance(e, ServeError) else ServeError(500, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        if not isinstance(e, ServeError):
            print(f"warning: request failed: {err.message}", file=sys.stderr, flush=True)
        on_error(err)
        yield f"data: {json.dumps(err.body())}\n\n"
        yield "data: [DONE]\n\n"
        return
    on_answer(out)
    choice = out["choices"][0]
    if choice["message"]["content"]:
        yield chunk(req, model, {"content": choice["message"]["content"]})
    yield chunk(req, model, {}, choice["finish_reason"], usage=out["usage"], dp=out["dp"])
    yield "data: [DONE]\n\n"
