"""Score many pairs with a judge through the judge-score cache, so no pair is scored twice.

`score_pairs` looks the pairs up in the cache's `judge_scores` table under
(judge.name, str(rule), min id, max id), scores only the missing ones (each distinct
unordered pair once, in batches) and stores each batch as it completes when the cache
is open for writing, so an interrupted sweep keeps what it scored.

Judges with `cacheable = False` (oracle, random, jaccard) skip the cache: they are
cheaper to recompute than to look up, and would fill the file with trivial rows.

Nothing here builds pairs or computes metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dp.cache import Cache
from dp.judge.base import Judge, Prefix, check_scores
from dp.judge.truncation import TruncationRule

DEFAULT_BATCH = 2048


def _ids(prefixes: Sequence[Prefix]) -> np.ndarray:
    return np.fromiter((p.trace_id for p in prefixes), dtype=np.int64, count=len(prefixes))


def score_pairs(
    judge: Judge, rule: TruncationRule | str, left: Sequence[Prefix], right: Sequence[Prefix],
    cache: Cache | None = None, batch_size: int = DEFAULT_BATCH, stats: dict | None = None,
) -> np.ndarray:
    """(len(left),) float64 scores of the pairs (left[i], right[i]).

    `stats`, if given, receives {'pairs', 'cached', 'computed'} (computed = distinct
    pairs the judge actually scored in this call).
    """
    n = len(left)
    if len(right) != n:
        raise ValueError(f"{n} left prefixes, {len(right)} right")
    a, b = _ids(left), _ids(right)
    use_cache = cache is not None and getattr(judge, "cacheable", True)
    out = cache.get_scores(judge.name, str(rule), a, b) if use_cache else np.full(n, np.nan)
    missing = np.flatnonzero(np.isnan(out))
    computed = 0
    if missing.size:
        lo, hi = np.minimum(a[missing], b[missing]), np.maximum(a[missing], b[missing])
        _, first, inverse = np.unique(np.stack([lo, hi], axis=1), axis=0, return_index=True,
                                      return_inverse=True)
        todo = missing[first]  # one representative row per distinct unordered pair
        fresh = np.empty(todo.size)
        for start in range(0, todo.size, batch_size):
            rows = todo[start:start + batch_size]
            s = check_scores(judge, judge.score([left[i] for i in rows], [right[i] for i in rows]), rows.size)
            fresh[start:start + rows.size] = s
            if use_cache and cache.write:
                cache.put_scores(judge.name, str(rule), a[rows], b[rows], s)
        out[missing] = fresh[inverse.reshape(-1)]
        computed = int(todo.size)
    if stats is not None:
        stats.update(pairs=n, cached=n - int(missing.size), computed=computed)
    return out
