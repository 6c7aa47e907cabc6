"""The judge pairs the ROC and truncation figures share: one seeded sample per run, scored once.

`sample_pairs` takes the labelled same-problem pairs of `dp.judge.pairs.build_pairs`
(an even per-problem cap, then a seeded sample down to `max_pairs` per run); the
selection depends on the labels and the seed only, so every truncation rule sees
the same pairs. `judge_scores` scores them through `dp.judge.scoring.score_pairs`,
i.e. through the judge-score cache. Nothing here draws or computes metrics.
"""

from __future__ import annotations

import numpy as np

from dp.cache.store import Cache
from dp.errors import DPError
from dp.judge.base import Judge, load_judge
from dp.judge.pairs import PairSet, build_pairs
from dp.judge.scoring import score_pairs
from dp.judge.truncation import TruncationRule
from dp.seeds import rng


def sample_pairs(cache: Cache, run: str, rule: TruncationRule | str, max_pairs: int, seed: int) -> PairSet:
    """At most `max_pairs` labelled pairs of `run`, spread over its problems, seeded by `seed`."""
    n_problems = max(len(cache.problems(run)), 1)
    pairs = build_pairs(cache, run, rule, max(1, -(-max_pairs // n_problems)), seed)
    if pairs.n <= max_pairs:
        return pairs
    keep = np.sort(rng(seed, "figures-pairs", run).choice(pairs.n, max_pairs, replace=False))
    return PairSet(pairs.rule, pairs.a_ids[keep], pairs.b_ids[keep], pairs.labels[keep],
                   pairs.problems[keep], [pairs.left[i] for i in keep], [pairs.right[i] for i in keep],
                   {**pairs.settings, "max_pairs_per_run": max_pairs})


def try_load(name: str, seed: int) -> tuple[Judge | None, str | None]:
    """(judge, None), or (None, the one-line reason it cannot be loaded)."""
    try:
        return load_judge(name, seed=seed), None
    except (DPError, ImportError) as e:
        return None, str(e) if isinstance(e, DPError) else f"{type(e).__name__}: {e}"


def judge_scores(cache: Cache, judge: Judge, pairs: PairSet) -> np.ndarray:
    """(pairs.n,) scores of `judge` on the pairs (cached judges read and fill the score cache)."""
    return score_pairs(judge, pairs.rule, pairs.left, pairs.right, cache=cache)


def both_labels(pairs: PairSet) -> bool:
    return pairs.n > 0 and 0 < int(pairs.labels.sum()) < pairs.n
