"""How traces are sampled: one frozen, validated `SamplingSpec`, and its one conversion to vLLM.

`SamplingSpec` is stored verbatim with a run (`to_dict`), so it holds only what
decides the traces. `to_vllm` is the only place that builds a
`vllm.SamplingParams`; the transformers engine reads the same fields with the same
meaning (see `dp.generate.engines`). This module never generates and never
imports vllm at module level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dp.errors import DPError

MAX_TOPK_LOGPROBS = 20  # vLLM's default max_logprobs; DeepConf uses k = 20


@dataclass(frozen=True)
class SamplingSpec:
    """Settings for sampling `n` traces per problem; validated on construction."""

    n: int = 16
    """traces per problem, >= 1"""
    max_tokens: int = 256
    """generated tokens per trace at most (the EOS token counts), >= 1"""
    temperature: float = 0.7
    """softmax temperature, >= 0; 0 means greedy (then the seed does not matter)"""
    top_p: float = 0.95
    """nucleus mass in (0, 1]; 1 disables it. No top-k cut is ever applied."""
    seed: int = 0
    """run seed; trace i of problem p samples with dp.seeds.trace_seed(seed, p, i)"""
    topk_logprobs: int = 20
    """k of the top-k log-probs recorded per token for DeepConf confidence, in 1..20"""
    store_topk: bool = False
    """keep the (n_tokens, k) top-k ids and log-probs in each TraceRecord (large)"""

    def __post_init__(self) -> None:
        def _int(name: str) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise DPError(f"{name} must be an integer, got {v!r}")
            return v

        if _int("n") < 1:
            raise DPError(f"n must be >= 1, got {self.n}")
        if _int("max_tokens") < 1:
            raise DPError(f"max_tokens must be >= 1, got {self.max_tokens}")
        _int("seed")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise DPError(f"temperature must be >= 0, got {self.temperature}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise DPError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= _int("topk_logprobs") <= MAX_TOPK_LOGPROBS:
            raise DPError(f"topk_logprobs must be in 1..{MAX_TOPK_LOGPROBS}, got {self.topk_logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        """The settings as plain JSON-able values (for the runs table and --json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SamplingSpec:
        """Inverse of `to_dict`; unknown keys are an error."""
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise DPError(f"unknown sampling settings: {', '.join(sorted(unknown))}")
        return cls(**d)


def to_vllm(spec: SamplingSpec, seed: int):
    """The `vllm.SamplingParams` of ONE trace: n=1, its own seed, top-k log-probs.

    Log-probs come back as `FlatLogprobs` (flat lists, k+1 entries per position:
    the sampled token first, then ranks 1..k), which the engine reshapes with
    numpy. Detokenization is off: text is decoded once, by the record builder, the
    same way for every engine. No top-k cut, no penalties, EOS ends the trace.
    """
    from vllm import SamplingParams

    return SamplingParams(
        n=1,
        temperature=float(spec.temperature),
        top_p=float(spec.top_p),
        top_k=0,
        max_tokens=spec.max_tokens,
        seed=int(seed),
        logprobs=spec.topk_logprobs,
        flat_logprobs=True,
        detokenize=False,
    )
