"""A seeded stand-in for `dp.generate.stream.StreamEngine` for fast tests of the live runner and `dp serve`.

It has the real SmolLM2 tokenizer (no model weights): each trace is a scripted
reasoning text whose length and boxed answer follow from its seed, streamed a few
tokens per delta (`pause` seconds apart, so other coroutines run) with seeded
top-k log-probs, cut at `max_tokens` and stoppable with `abort`. Text and
records are built by the real engine's own methods. Nothing here samples or
loads model weights; the slow tier runs the same paths on the real vLLM engine.
"""

from __future__ import annotations

import asyncio

import numpy as np

from dp.generate.records import TokenText
from dp.generate.stream import StreamEngine
from dp.models import load_tokenizer
from dp.types import FinishReason

FILLER = ("First we read the question carefully. Then we add the numbers step by step. "
          "We check the sum again to be sure. ")
_TOKENIZER = {}


class FakeCore:
    errored = False


class FakeEngine:
    name = "fake"

    def __init__(self, answers=("5", "5", "6", "7"), repeats=(1, 4), delta: int = 3, pause: float = 0.0):
        if "t" not in _TOKENIZER:
            _TOKENIZER["t"] = load_tokenizer("smollm2-135m")
        self.tokenizer = _TOKENIZER["t"]
        self.token_text = TokenText(self.tokenizer)
        self.answers, self.repeats, self.delta, self.pause = answers, repeats, delta, pause
        self.engine = FakeCore()
        self.aborted: set[str] = set()
        self.requests = 0

    text = StreamEngine.text
    record = StreamEngine.record

    def settings(self) -> dict:
        return {"engine": self.name}

    def trace_ids(self, seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        k = int(rng.integers(self.repeats[0], self.repeats[1] + 1))
        answer = self.answers[int(rng.integers(len(self.answers)))]
        text = FILLER * k + f"So the answer is \\boxed{{{answer}}}."
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    async def stream(self, stream, prompt_ids, spec, seed: int, max_tokens: int | None = None):
        self.requests += 1
        full = self.trace_ids(seed)
        ids = full[: max_tokens or spec.max_tokens]
        rng = np.random.default_rng([seed, 7])
        stream.k = spec.topk_logprobs
        at = 0
        while at < len(ids):
            await asyncio.sleep(self.pause)
            if stream.request_id in self.aborted:
                stream.finish = FinishReason.ABORT
                yield stream
                return
            new = ids[at: at + self.delta]
            at += len(new)
            lp = -rng.gamma(2.0, 1.0, size=(len(new), spec.topk_logprobs + 1)).astype(np.float32)
            stream.add(new, lp)
            if at == len(ids):
                stream.finish = FinishReason.STOP if len(ids) == len(full) else FinishReason.LENGTH
            yield stream

    async def abort(self, request_id: str) -> None:
        self.aborted.add(request_id)

    def close(self) -> None:
        pass
