"""Streaming generation on vLLM's async engine: per-trace token deltas and abort.

`StreamEngine` starts `AsyncLLM` with the same settings as the offline
`VLLMEngine` (fp32 on the CPU, chunked prefill sized away), streams each trace
token by token (`RequestOutputKind.DELTA`) and stops a trace at once with
`abort`. It knows nothing about pruning: `dp.simulate.live` decides what to stop.
Records are built by the same `build_record` as offline generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError
from dp.generate.engines import _Base, _one_line, vllm_env
from dp.generate.records import build_record
from dp.generate.sampling import SamplingSpec, to_vllm
from dp.generate.watchdog import guard_engines
from dp.quiet import is_quiet
from dp.types import FinishReason, TraceRecord

FEW = 4  # deltas of at most this many tokens are read with list slices (numpy costs more below)


@dataclass
class Stream:
    """What one trace has generated so far."""

    request_id: str
    ids: list[int] = field(default_factory=list)
    sampled: list[float] = field(default_factory=list)  # log-prob of each sampled token
    topk_ids: list[list[int]] = field(default_factory=list)
    topk_lp: list[list[float]] = field(default_factory=list)
    finish: FinishReason | None = None

    @property
    def n(self) -> int:
        return len(self.ids)


class StreamEngine(_Base):
    """AsyncLLM for one model; use inside a running asyncio loop."""

    def __init__(self, model: str = "smollm2-135m", *, dtype: str | None = None, enforce_eager: bool = True,
                 max_num_seqs: int = 64, max_prompt_tokens: int = 512, max_model_len: int = 4096,
                 kv_cache_gib: float = 2):
        super().__init__(model)
        vllm_env(kv_cache_gib)
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        self.name = f"vllm {vllm.__version__} (AsyncLLM)"
        self._settings = dict(
            dtype=dtype or ("float32" if current_platform.is_cpu() else "auto"), enforce_eager=enforce_eager,
            max_num_seqs=max_num_seqs, max_model_len=max_model_len,
            max_num_batched_tokens=max(8192, max_num_seqs * max_prompt_tokens),
        )
        if is_quiet():
            self._settings["use_tqdm_on_load"] = False  # no weight-loading bar unless --verbose
        args = AsyncEngineArgs(model=str(self.model_path), tokenizer=str(self.model_path), seed=0,
                               **self._settings)
        guard_engines()
        try:
            self.engine = AsyncLLM.from_engine_args(args)
        except Exception as exc:  # noqa: BLE001 - the user gets one line
            raise DPError(f"vLLM could not start model '{model}': {_one_line(exc)}") from exc

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
        async for out in self.engine.generate(TokensPrompt(prompt_token_ids=list(prompt_ids)), params,
                                              stream.request_id):
            o = out.outputs[0]
            ids = list(o.token_ids)
            if len(ids) <= FEW and len(o.logprobs.logprobs) == len(ids) * k1:  # the usual delta: list slices
                lps, tids = o.logprobs.logprobs, o.logprobs.token_ids
                for a in range(0, len(lps), k1):
                    stream.sampled.append(lps[a])
                    stream.topk_ids.append(tids[a + 1: a + k1])
                    stream.topk_lp.append(lps[a + 1: a + k1])
                stream.ids += ids
            elif ids:
                lp, tid = _positions(o.logprobs, len(ids), k1)
                stream.ids += ids
                stream.sampled += lp[:, 0].tolist()
                stream.topk_ids += tid[:, 1:].tolist()
                stream.topk_lp += lp[:, 1:].tolist()
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
        return build_record(
            problem_id=problem_id, index=index, seed=seed, token_ids=np.asarray(stream.ids, dtype=np.int32),
            sampled_logprobs=np.asarray(stream.sampled, dtype=np.float32),
            topk_ids=np.asarray(stream.topk_ids, dtype=np.int32).reshape(n, spec.topk_logprobs),
            topk_logprobs=np.asarray(stream.topk_lp, dtype=np.float32).reshape(n, spec.topk_logprobs),
            finish_reason=stream.finish or FinishReason.ABORT, k=spec.topk_logprobs, store_topk=False,
            token_text=self.token_text,
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
