"""A stand-in for `dp.generate.stream.StreamEngine` without vLLM: the real tokenizer, canned traces.

Trace t of any problem streams the tokens of `script(t)` one delta at a time (a short
pause between deltas, so other coroutines run), then stops; `abort` ends a stream at
once. Enough for the live drivers and `dp serve`'s app in the fast tier; nothing here
samples or loads model weights.
"""

from __future__ import annotations

import asyncio

import numpy as np

from dp.generate.engines import EngineBase
from dp.generate.stream import StreamEngine
from dp.types import FinishReason


def script(t: int) -> str:
    return f"We add the numbers one by one and check twice. The answer is \\boxed{{{5 + t % 2}}}."


class FakeEngine(EngineBase):
    name = "fake"
    text = StreamEngine.text
    record = StreamEngine.record

    def __init__(self, model: str = "smollm2-135m", pause: float = 0.002):
        super().__init__(model)
        self.pause = pause
        self.aborted: set[str] = set()
        self.engine = self  # `Served.engine_dead` looks here
        self.errored = False

    def settings(self) -> dict:
        return {"engine": self.name}

    async def stream(self, stream, prompt_ids, spec, seed, max_tokens=None):
        t = int(stream.request_id.removesuffix("-resume").split("-")[-2])
        ids = self.tokenizer(script(t), add_special_tokens=False)["input_ids"]
        ids = ids[stream.n:][: max_tokens or spec.max_tokens - stream.n]
        k = stream.k = spec.topk_logprobs
        for i in ids:
            await asyncio.sleep(self.pause)
            if stream.request_id in self.aborted:
                stream.finish = FinishReason.ABORT
                yield stream
                return
            stream.add([int(i)], [-0.1, *np.linspace(-0.1, -5.0, k).tolist()])
            yield stream
        stream.finish = FinishReason.STOP
        yield stream

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    def close(self) -> None:
        pass
