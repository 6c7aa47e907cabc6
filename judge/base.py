"""What a judge is (`Prefix`, the `Judge` protocol) and how one is found by name (`load_judge`).

A judge J(a, b) gives the probability that two truncated traces of the same question
end with the same final answer. It sees `Prefix` records only; the answer class on a
prefix is the ground truth and exists for the oracle judge alone.

The registry maps names to "module:Class" strings, imported on first use, so listing
judges never loads torch or scikit-learn. A judge class provides
`create(seed) -> Judge` (the default instance for its name) and, if it can be trained,
`load(directory, seed) -> Judge` (a directory holding `judge.json` with {"type": name}).
Other modules add judges with `register_judge`.

Nothing here scores pairs in bulk (see `dp.judge.scoring`) or trains (see `dp.judge.train`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dp.errors import DPError

JUDGE_FILE = "judge.json"


@dataclass(frozen=True, slots=True)
class Prefix:
    """The part of one trace a judge may read."""

    trace_id: int  # cache-wide trace id
    text: str  # the trace's text up to its decision point
    n_tokens: int  # tokens in `text`
    answer_class: int = -1  # the trace's FINAL answer class (-1 = none); for the oracle only


@runtime_checkable
class Judge(Protocol):
    """Scores pairs of prefixes: probability in [0, 1] that the two traces end with the same answer."""

    name: str  # stable key for the judge-score cache ("jaccard", "features:1a2b3c4d", ...)
    cacheable: bool  # False: cheaper to recompute than to look up (oracle, random)

    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        """(len(left),) float64 scores for the pairs (left[i], right[i]); symmetric in the two sides."""
        ...


# name -> "module:Class". Add with register_judge (e.g. the cross-encoder and LLM judges).
JUDGES: dict[str, str] = {
    "oracle": "dp.judge.simple:OracleJudge",
    "random": "dp.judge.simple:RandomJudge",
    "jaccard": "dp.judge.simple:JaccardJudge",
    "embedding": "dp.judge.embedding:EmbeddingJudge",
    "features": "dp.judge.features:FeaturesJudge",
    "cross-encoder": "dp.judge.cross_encoder:CrossEncoderJudge",
    "llm": "dp.judge.llm:LLMJudge",
    "lm-embed": "dp.judge.lm_embed:LMEmbedJudge",
}


def register_judge(name: str, target: str) -> None:
    """Make `load_judge(name)` (and directories whose judge.json has type `name`) use `target`."""
    if ":" not in target:
        raise ValueError(f"judge target must be 'module:Class', got {target!r}")
    JUDGES[name] = target


def judge_class(name: str) -> type:
    """The class registered under `name` (imported now)."""
    if name not in JUDGES:
        raise DPError(f"unknown judge '{name}' (known: {', '.join(sorted(JUDGES))}, or a directory with {JUDGE_FILE})")
    module, attr = JUDGES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def read_judge_file(directory: str | Path) -> dict:
    """The parsed judge.json of a trained-judge directory (or the file itself)."""
    path = Path(directory)
    if path.is_dir():
        path = path / JUDGE_FILE
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise DPError(f"no {JUDGE_FILE} in {directory}") from None
    except (OSError, ValueError) as e:
        raise DPError(f"cannot read {path}: {e}") from None
    if not isinstance(spec, dict) or "type" not in spec:
        raise DPError(f"{path} is not a dp judge file (no 'type')")
    return spec


def distinct_texts(left: Sequence[Prefix], right: Sequence[Prefix]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The distinct prefix texts of pairs (left[i], right[i]), in first-seen order, and each
    side's (n,) int64 index into them: a judge encodes each distinct text once."""
    index: dict[str, int] = {}
    for p in (*left, *right):
        index.setdefault(p.text, len(index))
    ia = np.fromiter((index[p.text] for p in left), dtype=np.int64, count=len(left))
    ib = np.fromiter((index[p.text] for p in right), dtype=np.int64, count=len(right))
    return list(index), ia, ib


def write_judge_file(directory: str | Path, spec: dict) -> Path:
    """Write `spec` as judge.json into `directory` (created if needed); returns its path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / JUDGE_FILE
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def open_judge_dir(path: str | Path, judge_type: str) -> tuple[dict, Path]:
    """(judge.json contents, its directory) of a saved judge of `judge_type`; DPError otherwise."""
    spec = read_judge_file(path)
    directory = Path(path) if Path(path).is_dir() else Path(path).parent
    if spec.get("type") != judge_type:
        raise DPError(f"{directory} holds a '{spec.get('type')}' judge, not a {judge_type} judge")
    return spec, directory


def load_judge(name_or_dir: str | Path, seed: int = 0) -> Judge:
    """A judge by registry name (`oracle`, `random`, `jaccard`, `embedding`, `features`, ...)
    or from a trained-judge directory (or its judge.json)."""
    key = str(name_or_dir)
    if key in JUDGES:
        return judge_class(key).create(seed=seed)
    path = Path(key)
    if path.is_dir() or (path.is_file() and path.suffix == ".json"):
        spec = read_judge_file(path)
        cls = judge_class(str(spec["type"]))
        if not hasattr(cls, "load"):
            raise DPError(f"judge type '{spec['type']}' in {path} cannot be loaded from a directory")
        return cls.load(path, seed=seed)
    raise DPError(f"unknown judge '{key}' (known: {', '.join(sorted(JUDGES))}, or a directory with {JUDGE_FILE})")


def check_scores(judge: Judge, scores: np.ndarray, n: int) -> np.ndarray:
    """`scores` as (n,) float64 in [0, 1]; DPError naming the judge otherwise."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape != (n,):
        raise DPError(f"judge {judge.name} returned {s.size} scores for {n} pairs")
    if s.size and (not np.all(np.isfinite(s)) or s.min() < 0.0 or s.max() > 1.0):
        raise DPError(f"judge {judge.name} returned scores outside [0, 1] or NaN")
    return s
