"""Streaming generation on vLLM's async engine: per-trace token deltas and abort.

`StreamEngine` starts `AsyncLLM` with the same settings as the offline
`VLLMEngine` (fp32 on the CPU, chunked prefill sized away), streams each trace
token by token (`RequestOutputKind.DELTA`) and stops a trace at once with
`abort`. It knows nothing about pruning: `dp.simulate.live.problem` decides what to stop.
Records are built by the same `build_record` as offline generation.
"""

from __future__ import annotations

from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from dp.confidence import row_confidence, token_confidence
from dp.errors import DPError
from dp.generate.engines import (
    EngineBase,
    engine_settings,
    one_line,
    share_cores_with_engine,
    vllm_env,
)
from dp.generate.records import build_record
from dp.generate.sampling import SamplingSpec, to_vllm
from dp.generate.watchdog import guard_engines
from dp.interrupts import shielded_children
from dp.types import FinishReason, TraceRecord

FEW = 4  # confidences of at most this many new tokens are computed in plain Python (numpy costs more below)
COMPACT = 256  # pending positions are folded into float32 confidences this many at a time


@dataclass
class Stream:
    """What one trace has generated so far: token ids, and per token the sampled log-prob and the
    confidence (`dp.confidence.token_confidence` of its top-k). The last < COMPACT positions are
    held as they arrived, k + 1 float32 log-probs a position in one flat `array` (no Python float
    per entry); then folded into float32 arrays of log-probs and confidences, ~50 bytes a token."""

    request_id: str
    ids: list[int] = field(default_factory=list)
    finish: FinishReason | None = None
    k: int = 0  # top-k entries per position
    _pending: array = field(default_factory=lambda: array("f"))  # per position: sampled, then top k
    _chunks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (sampled, confidence)
    _done: int = 0  # positions folded into _chunks

    @property
    def n(self) -> int:
        return len(self.ids)

    def add(self, ids: list[int], logprobs) -> None:
        """Append positions: `logprobs` holds k + 1 log-probs a position, the sampled token's then
        the top k (a flat list as in vLLM's FlatLogprobs, or an (m, k + 1) array)."""
        array_in = isinstance(logprobs, np.ndarray)
        if len(ids) * (self.k + 1) != (logprobs.size if array_in else len(logprobs)):
            raise ValueError(f"{len(ids)} tokens need {len(ids) * (self.k + 1)} log-probs (k={self.k})")
        if array_in:
            self._pending.frombytes(np.ascontiguousarray(logprobs, dtype=np.float32).tobytes())
        else:
            self._pending.extend(logprobs)
        self.ids += ids
        if self.n - self._done >= COMPACT:
            self.compact()

    def _rows(self, start: int = 0) -> np.ndarray:
        """The pending positions from `start` on (absolute), as an (m, k + 1) float32 array (a copy)."""
        rows = np.array(self._pending, dtype=np.float32).reshape(-1, self.k + 1)
        return rows[max(0, start - self._done):]

    def compact(self) -> None:
        """Fold the pending positions into float32 arrays (row by row the same numbers as on the whole trace)."""
        if self.n > self._done:
            rows = self._rows()
            self._chunks.append((rows[:, 0], token_confidence(rows[:, 1:], self.k)))
            self._done += rows.shape[0]
            self._pending = array("f")

    def confidence(self, start: int = 0) -> np.ndarray:
        """Token confidences from position `start` on (float32, not rounded), in O(positions asked)."""
        parts, at = [], self._done
        for _, conf in reversed(self._chunks):
            if at <= start:
                break
            at -= conf.size
            parts.append(conf[max(0, start - at):])
        parts.reverse()
        if self.n > max(start, self._done):
            parts.append(token_confidence(self._rows(start)[:, 1:], self.k))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def few_confidences(self, start: int) -> list[float] | None:
        """`confidence(start)` as plain floats (`row_confidence`, equal to the bit, no numpy call) when
        at most FEW positions are asked and none is folded yet (the usual delta); None otherwise."""
        if self.n - start > FEW or start < self._done:
            return None
        k, p, a = self.k, self._pending, (start - self._done) * (self.k + 1)
        return [row_confidence(p[b + 1: b + 1 + k], k) for b in range(a, len(p), k + 1)]

    def logprobs(self) -> np.ndarray:
        self.compact()
        return np.concatenate([s for s, _ in self._chunks]) if self._chunks else np.zeros(0, dtype=np.float32)


class StreamEngine(EngineBase):
    """AsyncLLM for one model; use inside a running asyncio loop."""

    def __init__(self, model: str = "smollm2-135m", *, dtype: str | None = None, enforce_eager: bool = True,
                 max_num_seqs: int = 64, max_prompt_tokens: int = 512, max_model_len: int = 4096,
                 kv_cache_gib: float = 2, stat_loggers: list | None = None):
        super().__init__(model)
        vllm_env(kv_cache_gib)
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.name = f"vllm {vllm.__version__} (AsyncLLM)"
        self._settings = engine_settings(dtype, enforce_eager, max_num_seqs, max_prompt_tokens, max_model_len)
        args = AsyncEngineArgs(model=str(self.model_path), tokenizer=str(self.model_path), seed=0,
                               **self._settings)
        guard_engines()
        try:
            with shielded_children():  # EngineCore and Workers never see a terminal's Ctrl-C
                self.engine = AsyncLLM.from_engine_args(args, stat_loggers=stat_loggers)
        except Exception as exc:  # noqa: BLE001 - the user gets one line
            raise DPError(f"vLLM could not start model '{model}': {one_line(exc)}") from exc
        freeze_startup_heap()
        share_cores_with_engine()

    def settings(self) -> dict:
        return {"engine": self.name, **self._settings}

    async def stream(self, stream: Stream, prompt_ids: list[int], spec: SamplingSpec, seed: int,
                     max_tokens: int | None = None) -> AsyncIterator[Stream]:
        """Generate for `stream` (appending to what it has); yields it after every delta."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = to_vllm(spec, seed)
        params.output_kind = RequestOutputKind.DELTA
        if max_tokens is not None:
            params.max_tokens = max_tokens
        k1 = spec.topk_logprobs + 1
        stream.k = spec.topk_logprobs
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)), params,
                                              stream.request_id):
            o = out.outputs[0]
            ids = o.token_ids
            if ids:
                lps = o.logprobs.logprobs
                # k + 1 entries a position (sampled, then ranks 1..k) as a list; merged deltas may need sorting
                stream.add(ids, lps if len(lps) == len(ids) * k1 else _positions(o.logprobs, len(ids), k1)[0])
            if o.finish_reason:
                stream.finish = FinishReason(o.finish_reason) if o.finish_reason in ("stop", "length", "abort") \
                    else FinishReason.UNKNOWN
            yield stream

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    def text(self, stream: Stream) -> tuple[str, np.ndarray]:
        """(text, end offsets) of what the stream has so far."""
        return self.token_text.decode(np.asarray(stream.ids, dtype=np.int32))

    def record(self, stream: Stream, problem_id: str, index: int, seed: int, spec: SamplingSpec) -> TraceRecord:
        n = stream.n
        stream.k = stream.k or spec.topk_logprobs
        conf = stream.confidence(0)  # the top-k were folded into confidences: one column whose
        return build_record(         # token_confidence (k = 1) is exactly that confidence
            problem_id=problem_id, index=index, seed=seed, token_ids=np.asarray(stream.ids, dtype=np.int32),
            sampled_logprobs=stream.logprobs(), topk_ids=np.zeros((n, 1), dtype=np.int32),
            topk_logprobs=-conf.reshape(n, 1), finish_reason=stream.finish or FinishReason.ABORT, k=1,
            store_topk=False, token_text=self.token_text,
        )

    def close(self) -> None:
        """Shut the engine core down now (not at interpreter exit, when vLLM's __del__ fails)."""
        engine = self.__dict__.pop("engine", None)
        if engine is not None:
            try:
                engine.shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass
            del engine
            thaw_startup_heap()


def freeze_startup_heap() -> None:
    """Move every object alive now (torch, vLLM, transformers, the tokenizer) out of the garbage
    collector's reach, as vLLM's own API server does after start-up (`freeze_gc_heap`). Streaming
    allocates a few containers per delta a trace; without this, each full collection walks the
    whole start-up heap: measured at 512 streams on the stand-in, most of its 56 us per token."""
    from vllm.utils.gc_utils import freeze_gc_heap

    freeze_gc_heap()


def thaw_startup_heap() -> None:
    """Undo `freeze_startup_heap` when the engine closes (as vLLM's engine core does at shutdown), so
    what start-up made is collected again and nothing is reported leaked at exit."""
    import gc

    gc.unfreeze()


def _positions(flat, n: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, k1) log-probs and ids of n positions: the sampled token, then ranks 1..k.

    A delta holds k1 entries per position; but when the consumer falls behind, vLLM
    merges deltas through a dict per position, which drops the sampled token's entry
    whenever it is also among the top k. Then the position has k entries, the first
    being the sampled token (with its top-k rank): it is read back position by position.
    """
    if len(flat.logprobs) == n * k1:
        return (np.asarray(flat.logprobs, dtype=np.float32).reshape(n, k1),
                np.asarray(flat.token_ids, dtype=np.int64).reshape(n, k1))
    lp = np.zeros((n, k1), dtype=np.float32)
    tid = np.zeros((n, k1), dtype=np.int64)
    for i, (a, b) in enumerate(zip(flat.start_indices, flat.end_indices, strict=True)):
        lps, ids, ranks = flat.logprobs[a:b], flat.token_ids[a:b], flat.ranks[a:b]
        lp[i, 0], tid[i, 0] = lps[0], ids[0]
        top = range(1, b - a) if b - a == k1 else range(b - a)
        order = sorted(top, key=lambda j: ranks[j])
        lp[i, 1:], tid[i, 1:] = [lps[j] for j in order], [ids[j] for j in order]
    return lp, tid
