"""Read text-only traces sampled elsewhere and turn them into problems and TraceRecords.

Formats (one JSON object per line):
- `generic`: {"problem_id", "question", "gold", "traces": [str, ...]} with optional
  "answers": [str|null, ...] (answers extracted elsewhere), "kind" and "model".
- `esc`: the Early-Stopping Self-Consistency file {question, answer, generated_answer}.
- `qwen-math`: the Qwen2.5-Math evaluation file {idx, question, gt, response, pred, score}.

Texts are tokenized with a named tokenizer (recorded in the run) to get token ids
and end offsets; log-probs and confidences stay missing. Nothing here writes to
the cache: the CLI hands the records to `dp.cache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dp.errors import DPError
from dp.problems import read_jsonl
from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

FORMATS = ("generic", "esc", "qwen-math")


@dataclass
class Imported:
    """One problem and its traces as read from a file (before tokenization)."""

    problem: Problem
    texts: list[str]
    answers: list[str | None] | None  # answers extracted elsewhere, or None to extract here


@dataclass(frozen=True)
class FileMeta:
    """What the file says about where its traces came from."""

    model: str
    dataset: str


def _lines(path: Path) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise DPError(f"no such file: {path}")
    return read_jsonl(path)


def _need(obj: dict, key: str, typ, path: Path, lineno: int):
    if key not in obj:
        raise DPError(f"{path}:{lineno}: missing field '{key}'")
    value = obj[key]
    if not isinstance(value, typ):
        raise DPError(f"{path}:{lineno}: field '{key}' should be {getattr(typ, '__name__', typ)}")
    if isinstance(value, list) and not all(isinstance(t, str) for t in value):
        raise DPError(f"{path}:{lineno}: field '{key}' should be a list of strings")
    return value


def read_file(path: str | Path, fmt: str) -> tuple[FileMeta, list[Imported]]:
    """Parse a trace file; a malformed line raises DPError naming the file and line."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DPError(f"unknown import format '{fmt}'; known: {', '.join(FORMATS)}")
    items: list[Imported] = []
    model, dataset = {"esc": ("gpt-3.5-turbo (ESC repository)", "last_letters"),
                      "qwen-math": ("Qwen2.5-Math (evaluation example)", "math"),
                      "generic": ("unknown", path.stem)}[fmt]
    seen: set[str] = set()
    for lineno, obj in _lines(path):
        if fmt == "esc":
            texts = _need(obj, "generated_answer", list, path, lineno)
            problem = Problem("last_letters", f"ll-{len(items):04d}", _need(obj, "question", str, path, lineno),
                              str(_need(obj, "answer", str, path, lineno)), AnswerKind.STRING)
            answers = None
        elif fmt == "qwen-math":
            texts = _need(obj, "response", list, path, lineno)
            preds = _need(obj, "pred", list, path, lineno)
            if len(preds) != len(texts):
                raise DPError(f"{path}:{lineno}: 'pred' has {len(preds)} entries, 'response' {len(texts)}")
            pid = f"math-{int(obj.get('idx', len(items))):04d}"
            problem = Problem("math", pid, _need(obj, "question", str, path, lineno),
                              str(_need(obj, "gt", str, path, lineno)), AnswerKind.EXPRESSION)
            answers = [p if p.strip() else None for p in preds]
        else:
            texts = _need(obj, "traces", list, path, lineno)
            gold = obj.get("gold")
            kind = obj.get("kind", AnswerKind.EXPRESSION.value)
            if kind not in {k.value for k in AnswerKind}:
                raise DPError(f"{path}:{lineno}: unknown answer kind '{kind}'")
            problem = Problem(obj.get("dataset", path.stem), str(_need(obj, "problem_id", (str, int), path, lineno)),
                              _need(obj, "question", str, path, lineno),
                              None if gold is None else str(gold), AnswerKind(kind))
            answers = obj.get("answers")
            if answers is not None and (not isinstance(answers, list) or len(answers) != len(texts)):
                raise DPError(f"{path}:{lineno}: 'answers' must be a list as long as 'traces'")
            model = str(obj.get("model", model))
            dataset = problem.dataset
        if problem.problem_id in seen:
            raise DPError(f"{path}:{lineno}: duplicate problem id '{problem.problem_id}'")
        seen.add(problem.problem_id)
        if not texts:
            raise DPError(f"{path}:{lineno}: no traces")
        items.append(Imported(problem, texts, answers))
    if not items:
        raise DPError(f"{path}: no problems found")
    return FileMeta(model=model, dataset=dataset), items


def tokenize(tokenizer, item: Imported) -> list[TraceRecord]:
    """TraceRecords for one imported problem: ids and end offsets from a fast tokenizer."""
    enc = tokenizer(item.texts, add_special_tokens=False, return_offsets_mapping=True)
    records = []
    for i, text in enumerate(item.texts):
        ids = np.asarray(enc["input_ids"][i], dtype=np.int32)
        ends = np.asarray([e for _, e in enc["offset_mapping"][i]], dtype=np.int32)
        ends = np.maximum.accumulate(ends) if ends.size else ends
        if ends.size:
            ends[-1] = len(text)  # trailing whitespace the tokenizer folded still belongs to the text
        records.append(TraceRecord(
            problem_id=item.problem.problem_id, index=i, text=text, token_ids=ids, offsets=ends,
            finish_reason=FinishReason.UNKNOWN,
            answer=None if item.answers is None else item.answers[i],
            answer_given=item.answers is not None,
        ))
    return records
