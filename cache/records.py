"""The records the cache hands out and takes in: `RunInfo` (what made a run) and `ProblemTraces`
(one problem's traces as arrays). Plain data; no SQL, no grading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError
from dp.types import AnswerKind, Problem


def check_run_name(run: str) -> str:
    """A run name: any non-blank text (it reaches SQL only as a bound parameter)."""
    if not isinstance(run, str) or not run.strip():
        raise DPError("run names must not be empty")
    return run


@dataclass(frozen=True)
class RunInfo:
    """What made a run; stored verbatim in the `runs` table."""

    run: str
    model: str
    engine: str
    tokenizer: str
    source: str
    dataset: str
    n: int
    seed: int | None = None
    sampling: dict = field(default_factory=dict)
    prompt_template: str = ""
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_run_name(self.run)

    def identity(self) -> dict:
        """The fields that must agree when a run is resumed."""
        return {
            "model": self.model, "engine": self.engine.split(" ")[0], "tokenizer": self.tokenizer,
            "dataset": self.dataset, "n": self.n, "seed": self.seed,
            "sampling": self.sampling, "prompt_template": self.prompt_template,
        }


@dataclass
class ProblemTraces:
    """All traces of one problem in one run, as arrays ordered by trace index."""

    problem: Problem
    trace_ids: np.ndarray  # (n,) int64, cache-wide trace ids
    index: np.ndarray  # (n,) int32, 0..N-1
    lengths: np.ndarray  # (n,) int32, tokens per trace
    answers: list[str | None]  # (n,) extracted answers
    classes: np.ndarray  # (n,) int32 answer class, -1 = no answer
    correct: np.ndarray  # (n,) bool, the trace's class is equivalent to gold
    finish: list[str]  # (n,) finish reasons
    seeds: np.ndarray  # (n,) int64, -1 where unknown

    @property
    def n(self) -> int:
        return int(len(self.trace_ids))

    @property
    def correct_classes(self) -> set[int]:
        """Classes whose answer is equivalent to the gold answer."""
        return {int(c) for c in np.unique(self.classes[self.correct]) if c >= 0}


def problem_from_row(row: tuple) -> Problem:
    pid, dataset, question, gold, kind, choices = row
    return Problem(
        dataset=dataset, problem_id=pid, question=question, gold=gold,
        kind=AnswerKind(kind), choices=tuple(json.loads(choices)) if choices else (),
    )
