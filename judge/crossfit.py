"""Cross-fitting: K judges trained on folds of a run's problems, each problem scored by
the judge that never saw it (method.md section 4: a judge is evaluated only on
problems it was not trained on).

`crossfit_judges` splits the run's problems into K seeded folds, trains one judge of
the given type per fold on the pairs of the other K - 1 folds (the same trainers as
`dp judge train`, written to a temporary directory that lives as long as the
returned object) and returns a `FoldJudges`: `for_problem(problem_id)` gives the
judge to score that problem with. Each fold judge keeps its own name (its weight
digest), so the judge-score cache never mixes folds. Nothing here replays or prints.
"""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dp.cache import Cache
from dp.errors import DPError
from dp.judge.pairs import build_pairs
from dp.judge.truncation import TruncationRule
from dp.seeds import rng as make_rng


@dataclass
class FoldJudges:
    """K judges and the fold of every problem; `name` summarises them for reports."""

    judges: list  # K trained judges
    fold_of: dict[str, int]  # problem_id -> fold whose judge never saw it
    judge_type: str
    k: int
    seed: int
    _dir: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"crossfit{self.k}:" + "+".join(j.name for j in self.judges)

    def for_problem(self, problem_id: str):
        if problem_id not in self.fold_of:
            raise DPError(f"problem '{problem_id}' was not in the cross-fitted run")
        return self.judges[self.fold_of[problem_id]]

    def pair_folds(self, pairs) -> np.ndarray:
        """(m,) int64 fold of each pair of a PairSet (its problem's fold)."""
        return pair_folds(pairs, self.fold_of)

    def describe(self) -> dict:
        return {"crossfit": self.k, "judge_type": self.judge_type, "seed": self.seed,
                "fold_judges": [j.name for j in self.judges]}


def assign_folds(problem_ids: list[str], k: int, seed: int) -> dict[str, int]:
    """problem_id -> fold in 0..k-1: a seeded shuffle dealt round-robin (sizes differ by <= 1)."""
    if k < 2:
        raise DPError(f"crossfit needs K >= 2 folds, got {k}")
    if len(problem_ids) < k:
        raise DPError(f"crossfit {k} needs at least {k} problems, the run has {len(problem_ids)}")
    order = make_rng(seed, "crossfit", k).permutation(len(problem_ids))
    return {problem_ids[i]: int(pos % k) for pos, i in enumerate(order)}


def pair_folds(pairs, fold_of: dict[str, int]) -> np.ndarray:
    """(m,) int64 fold of each pair; `pairs.problems` holds "run/problem_id"."""
    return np.array([fold_of[str(p).split("/", 1)[1]] for p in pairs.problems], dtype=np.int64)


def crossfit_judges(cache: Cache, run: str, judge_type: str, rule: TruncationRule | str, k: int,
                    seed: int = 0, oversample: int = 2, max_pairs: int | None = None,
                    settings: dict | None = None) -> FoldJudges:
    """Train K judges of `judge_type` on folds of `run`'s problems under `rule`."""
    from dp.judge.train import TRAINERS, training_meta

    if judge_type not in TRAINERS:
        raise DPError(f"--crossfit needs a trainable judge type ({', '.join(sorted(TRAINERS))}), "
                      f"got '{judge_type}'")
    rule = TruncationRule.parse(rule)
    pairs = build_pairs(cache, run, rule, max_pairs, seed, oversample)
    ids = [pt.problem.problem_id for pt in cache.load_run(run)]
    folds = assign_folds(ids, k, seed)
    pair_fold = pair_folds(pairs, folds)
    module, attr = TRAINERS[judge_type].split(":")
    fit = getattr(importlib.import_module(module), attr)
    tmp = tempfile.TemporaryDirectory(prefix="dp-crossfit-")
    judges = []
    for f in range(k):
        train = pairs.subset(pair_fold != f)
        if train.n == 0 or len(np.unique(train.labels)) < 2:
            raise DPError(f"crossfit fold {f} of run '{run}' has no training pairs of both labels under {rule}")
        train_ids = sorted(p for p, g in folds.items() if g != f)
        meta = training_meta(cache, {run: train_ids}, [str(rule)], seed, oversample, max_pairs, train)
        meta["trained_on"]["crossfit"] = {"k": k, "fold": f}
        judges.append(fit(train, Path(tmp.name) / f"fold-{f}", seed, meta, **dict(settings or {})))
    return FoldJudges(judges, folds, judge_type, k, seed, tmp)
