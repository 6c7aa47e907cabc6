"""Typed records that cross module boundaries: problems, generated traces, enums.

Per-token payloads stay numpy arrays with their shape and unit noted. Nothing here
does I/O or computation beyond validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class AnswerKind(StrEnum):
    """How a gold answer is compared: a number, a math expression, a choice letter, a string."""

    NUMBER = "number"
    EXPRESSION = "expression"
    CHOICE = "choice"
    STRING = "string"


class FinishReason(StrEnum):
    """Why a trace ended: the model stopped, hit max tokens, was aborted (pruned live), unknown (imported)."""

    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Problem:
    """One benchmark question with its gold answer."""

    dataset: str
    problem_id: str
    question: str
    gold: str | None
    kind: AnswerKind = AnswerKind.EXPRESSION
    choices: tuple[str, ...] = ()  # choice texts in presented order (letters A, B, ...), or ()


@dataclass
class TraceRecord:
    """One sampled (or imported) trace, token by token, before it enters the cache.

    All per-token arrays have the same length n = number of generated tokens.
    """

    problem_id: str
    index: int  # 0..N-1 within (run, problem)
    text: str
    token_ids: np.ndarray  # (n,) int32, vocabulary ids
    offsets: np.ndarray  # (n,) int32, end offset (in characters of `text`) of each token
    seed: int | None = None  # per-trace sampling seed; None for imported traces
    finish_reason: FinishReason = FinishReason.UNKNOWN
    logprobs: np.ndarray | None = None  # (n,) float32, log-prob of the sampled token; None = missing
    confidence: np.ndarray | None = None  # (n,) float32, dp.confidence.token_confidence; None = missing
    topk_ids: np.ndarray | None = None  # (n, k) int32, optional top-k alternatives
    topk_logprobs: np.ndarray | None = None  # (n, k) float32
    answer: str | None = field(default=None)  # answer extracted elsewhere (see answer_given)
    answer_given: bool = False  # True: `answer` (even None) comes from elsewhere; False: extract from text

    def __post_init__(self) -> None:
        n = len(self.token_ids)
        for name in ("offsets", "logprobs", "confidence"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"trace {self.problem_id}/{self.index}: {name} has {len(arr)} entries, token_ids {n}")

    @property
    def n_tokens(self) -> int:
        return int(len(self.token_ids))
