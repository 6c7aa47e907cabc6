"""Small trace caches for the judge tests, built directly with Cache + TraceRecord.

Tokens are faked by splitting text on whitespace (a token = one word, its end offset
= the end of the word), which is enough to test truncation, pairs and scoring.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dp.cache import Cache, RunInfo
from dp.problems import shared_data_dir
from dp.types import AnswerKind, Problem, TraceRecord

_DATA = shared_data_dir()
TRACES = (_DATA or Path("../shared/data")) / "traces"
QWEN = TRACES / "qwen25math_math_cot_100.jsonl"
ESC = TRACES / "esc_gpt35_last_letters_T0.7.jsonl"


def word_offsets(text: str) -> np.ndarray:
    """(n,) int32 end offsets of the whitespace-separated words of `text`."""
    return np.array([m.end() for m in re.finditer(r"\S+", text)], dtype=np.int32)


def record(pid: str, idx: int, text: str) -> TraceRecord:
    off = word_offsets(text)
    return TraceRecord(problem_id=pid, index=idx, text=text,
                       token_ids=np.arange(len(off), dtype=np.int32), offsets=off)


def make_cache(path: Path, run: str, problems: dict[str, list[str]],
               kind: AnswerKind = AnswerKind.EXPRESSION, gold: dict[str, str] | None = None) -> Path:
    """A cache with one run: problem id -> trace texts."""
    n = max(len(v) for v in problems.values())
    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run=run, model="test", engine="test", tokenizer="whitespace",
                             source="test", dataset="test", n=n))
        c.add_problems(run, [Problem("test", pid, f"question {pid}", (gold or {}).get(pid), kind)
                             for pid in problems])
        c.write_traces(run, [record(pid, i, t) for pid, texts in problems.items()
                             for i, t in enumerate(texts)])
    return path


def real_problems(path: Path, n_mixed: int, n_uniform: int, traces_per_problem: int = 8) -> dict[str, list[str]]:
    """Problems of the shared Qwen trace file as problem id -> texts: the first `n_mixed`
    whose 8 answers disagree, then the first `n_uniform` whose answers all agree."""
    out: dict[str, list[str]] = {}
    mixed = uniform = 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            if len(set(row["pred"])) > 1 and mixed < n_mixed:
                mixed += 1
            elif len(set(row["pred"])) == 1 and uniform < n_uniform:
                uniform += 1
            else:
                continue
            out[f"q{i:03d}"] = list(row["code"])[:traces_per_problem]
    return out


def qwen_cache(path: Path, run: str = "qwen", n_mixed: int = 8, n_uniform: int = 4) -> Path:
    """A small real cache: Qwen2.5-Math MATH traces, whitespace tokens."""
    if not QWEN.is_file():
        pytest.skip("../shared/data is not present")
    return make_cache(path, run, real_problems(QWEN, n_mixed, n_uniform))
