"""Labelled judge pairs from a cached run: every same-problem pair i < j (or a seeded sample).

Label policy (one place): label 1 when both traces have an answer and the answer
classes are equal; label 0 when exactly one has an answer, or both have different
ones; pairs where neither trace has an answer are left out (nothing to agree on).
The classes come from the cache, i.e. from `dp.answers` equivalence, the same that
grades and votes.

Each trace's prefix ends at its decision point under the `TruncationRule`
(`dp.judge.truncation`), read problem by problem by offsets
(`dp.judge.prefix_reader`), and only for the traces the chosen pairs use. Oversampling the minority ("different") class repeats
label-0 pairs.

Nothing here scores or trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dp.cache import Cache, ProblemTraces
from dp.errors import DPError
from dp.judge.base import Prefix
from dp.judge.insample import problem_digest
from dp.judge.prefix_reader import read_prefixes
from dp.judge.truncation import TruncationRule
from dp.seeds import rng


@dataclass
class PairSet:
    """Pairs of one or more runs, as parallel arrays plus the two sides' prefixes."""

    rule: TruncationRule
    a_ids: np.ndarray  # (m,) int64 trace ids, left side (the lower index within the problem)
    b_ids: np.ndarray  # (m,) int64 trace ids, right side
    labels: np.ndarray  # (m,) int8, 1 = same final answer
    problems: np.ndarray  # (m,) object, "run/problem_id" of each pair
    left: list[Prefix]  # (m,) prefixes of a_ids
    right: list[Prefix]  # (m,) prefixes of b_ids
    settings: dict = field(default_factory=dict)
    questions: np.ndarray | None = None  # (m,) object, digest of each pair's question (`problem_digest`)

    @property
    def n(self) -> int:
        return int(len(self.labels))

    @property
    def positive_rate(self) -> float:
        return float(self.labels.mean()) if self.n else float("nan")

    def summary(self) -> dict:
        return {"pairs": self.n, "positive_rate": self.positive_rate,
                "problems": int(len(np.unique(self.problems))) if self.n else 0, **self.settings}

    def question_keys(self) -> np.ndarray:
        """(m,) what a train/validation split groups by: the question digest, so one question in
        two runs (or under two problem ids) never lands in both halves; "run/problem_id" where
        the digests are unknown."""
        return self.problems if self.questions is None else self.questions

    def to_jsonl(self, path: str | Path) -> int:
        """Write one JSON object per pair (ids, label, prefix tokens and texts); returns pairs written."""
        with open(path, "w", encoding="utf-8") as f:
            for i in range(self.n):
                a, b = self.left[i], self.right[i]
                f.write(json.dumps({
                    "problem": self.problems[i], "trace_a": a.trace_id, "trace_b": b.trace_id,
                    "label": int(self.labels[i]), "tokens_a": a.n_tokens, "tokens_b": b.n_tokens,
                    "prefix_a": a.text, "prefix_b": b.text,
                }, ensure_ascii=False) + "\n")
        return self.n

    def subset(self, keep: np.ndarray) -> PairSet:
        """The pairs where `keep` (m,) bool is True."""
        idx = np.flatnonzero(keep)
        return PairSet(self.rule, self.a_ids[idx], self.b_ids[idx], self.labels[idx], self.problems[idx],
                       [self.left[i] for i in idx], [self.right[i] for i in idx], dict(self.settings),
                       None if self.questions is None else self.questions[idx])

    @staticmethod
    def concat(sets: list[PairSet]) -> PairSet:
        if not sets:
            raise ValueError("no pair sets")
        return PairSet(
            rule=sets[0].rule,
            a_ids=np.concatenate([s.a_ids for s in sets]), b_ids=np.concatenate([s.b_ids for s in sets]),
            labels=np.concatenate([s.labels for s in sets]),
            problems=np.concatenate([s.problems for s in sets]),
            left=[p for s in sets for p in s.left], right=[p for s in sets for p in s.right],
            settings={**sets[0].settings, "run": [s.settings.get("run") for s in sets],
                      "truncate": [s.settings.get("truncate") for s in sets]},
            questions=(None if any(s.questions is None for s in sets)
                       else np.concatenate([s.questions for s in sets])),
        )


def pair_labels(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """(m,) int8 labels for answer classes ca, cb: 1 same answer, 0 different, -1 = leave out."""
    ca, cb = np.asarray(ca), np.asarray(cb)
    labels = ((ca == cb) & (ca >= 0)).astype(np.int8)
    labels[(ca < 0) & (cb < 0)] = -1
    return labels


def run_prefixes(cache: Cache, run: str, rule: TruncationRule) -> tuple[list[ProblemTraces], dict[int, Prefix]]:
    """The run's problems and every trace's prefix under `rule`, keyed by trace id."""
    problems = cache.load_run(run)
    if not problems:
        return problems, {}
    prefixes: dict[int, Prefix] = {}
    for p in problems:  # one problem at a time: a run's texts and tokens are never all in memory
        _, pre = read_prefixes(cache, p.trace_ids, p.lengths, p.classes, rule)
        prefixes.update((x.trace_id, x) for x in pre)
    return problems, prefixes


def build_pairs(
    cache: Cache, run: str, rule: TruncationRule | str,
    max_pairs_per_problem: int | None = None, seed: int = 0, oversample_negative: int = 1,
) -> PairSet:
    """All labelled same-problem pairs of `run` (at most `max_pairs_per_problem` per problem,
    sampled with `seed`), label-0 pairs repeated `oversample_negative` times."""
    rule = TruncationRule.parse(rule)
    if oversample_negative < 1:
        raise DPError(f"oversample must be an integer >= 1, got {oversample_negative}")
    if max_pairs_per_problem is not None and max_pairs_per_problem < 1:
        raise DPError(f"max pairs per problem must be >= 1, got {max_pairs_per_problem}")
    problems = cache.load_run(run)
    prefixes: dict[int, Prefix] = {}
    a_parts, b_parts, l_parts, p_parts, q_parts = [], [], [], [], []
    for p in problems:
        i, j = np.triu_indices(p.n, k=1)
        labels = pair_labels(p.classes[i], p.classes[j])
        keep = np.flatnonzero(labels >= 0)
        if max_pairs_per_problem is not None and keep.size > max_pairs_per_problem:
            pick = rng(seed, "pairs", run, p.problem.problem_id).choice(keep.size, max_pairs_per_problem, replace=False)
            keep = keep[np.sort(pick)]
        need = np.unique(np.concatenate([i[keep], j[keep]]))  # read only the prefixes the pairs use
        if need.size:
            _, pre = read_prefixes(cache, p.trace_ids[need], p.lengths[need], p.classes[need], rule)
            prefixes.update((x.trace_id, x) for x in pre)
        a_parts.append(p.trace_ids[i[keep]])
        b_parts.append(p.trace_ids[j[keep]])
        l_parts.append(labels[keep])
        p_parts.append(np.full(keep.size, f"{run}/{p.problem.problem_id}", dtype=object))
        q_parts.append(np.full(keep.size, problem_digest(p.problem.question), dtype=object))
    if not a_parts:
        a, b, lab, prob, qs = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8),
                               np.zeros(0, object), np.zeros(0, object))
    else:
        a, b = np.concatenate(a_parts).astype(np.int64), np.concatenate(b_parts).astype(np.int64)
        lab, prob, qs = np.concatenate(l_parts), np.concatenate(p_parts), np.concatenate(q_parts)
    if oversample_negative > 1:
        reps = np.where(lab == 0, oversample_negative, 1)
        a, b, lab, prob, qs = (np.repeat(x, reps) for x in (a, b, lab, prob, qs))
    settings = {"run": run, "truncate": str(rule), "max_pairs_per_problem": max_pairs_per_problem,
                "seed": seed, "oversample_negative": oversample_negative}
    return PairSet(rule, a, b, lab, prob, [prefixes[int(t)] for t in a], [prefixes[int(t)] for t in b],
                   settings, qs)
