"""The judges that need no model: `oracle` (upper bound), `random` (lower bound) and `jaccard`.

- oracle: 1.0 when the two traces' final answer classes are equal and >= 0, else 0.0.
  It reads `Prefix.answer_class`, the ground truth no real judge may see.
- random: a uniform [0, 1) score per unordered pair, from a hash of (seed, min id,
  max id): the same pair gets the same score in any call order, batch or process.
- jaccard: |A & B| / |A | B| over the sets of lowercased word tokens (`\\w+`) of the two
  prefixes; two prefixes without words score 1.0 (identical, if uninformative).

None of them is worth caching: each is cheaper to recompute than a DuckDB lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from dp.judge.base import Prefix

_WORD = re.compile(r"\w+")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class OracleJudge:
    """J = 1 exactly when the final answers match (an answer class >= 0 on both sides)."""

    name = "oracle"
    cacheable = False

    @classmethod
    def create(cls, seed: int = 0) -> OracleJudge:
        return cls()

    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        a = np.fromiter((p.answer_class for p in left), dtype=np.int64, count=len(left))
        b = np.fromiter((p.answer_class for p in right), dtype=np.int64, count=len(right))
        return ((a == b) & (a >= 0)).astype(np.float64)

    def score_matrix(self, prefixes: Sequence[Prefix]) -> np.ndarray:
        """(N, N) scores of every pair of `prefixes` at once (the same values as `score`)."""
        c = np.fromiter((p.answer_class for p in prefixes), dtype=np.int64, count=len(prefixes))
        return ((c[:, None] == c[None, :]) & (c[:, None] >= 0)).astype(np.float64)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def pair_uniform(seed: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per unordered pair (a[i], b[i]), a pure function of (seed, min, max)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    lo = np.minimum(a, b).astype(np.uint64)
    hi = np.maximum(a, b).astype(np.uint64)
    s = _splitmix64(np.full(lo.shape, np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)))
    h = _splitmix64(s ^ _splitmix64(lo ^ _splitmix64(hi)))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


class RandomJudge:
    """A coin per unordered pair: the lower bound any judge must beat."""

    cacheable = False

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.name = f"random:{self.seed}"

    @classmethod
    def create(cls, seed: int = 0) -> RandomJudge:
        return cls(seed)

    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        a = np.fromiter((p.trace_id for p in left), dtype=np.int64, count=len(left))
        b = np.fromiter((p.trace_id for p in right), dtype=np.int64, count=len(right))
        return pair_uniform(self.seed, a, b)

    def score_matrix(self, prefixes: Sequence[Prefix]) -> np.ndarray:
        """(N, N) scores of every pair of `prefixes` at once (the same values as `score`)."""
        ids = np.fromiter((p.trace_id for p in prefixes), dtype=np.int64, count=len(prefixes))
        return pair_uniform(self.seed, ids[:, None], ids[None, :])


@lru_cache(maxsize=2048)
def word_set(text: str) -> frozenset[str]:
    """Lowercased `\\w+` tokens of `text`, as a set. Remembered for the last 2,048 texts: live, a
    cluster's representative is scored against every later arrival, one call each."""
    return frozenset(_WORD.findall(text.lower()))


def jaccard(a: frozenset, b: frozenset) -> float:
    """|a & b| / |a | b|; 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class JaccardJudge:
    """Word-set overlap of the two prefixes."""

    name = "jaccard"
    cacheable = False

    @classmethod
    def create(cls, seed: int = 0) -> JaccardJudge:
        return cls()

    def score(self, left: Sequence[Prefix], right: Sequence[Prefix]) -> np.ndarray:
        return np.array([jaccard(word_set(a.text), word_set(b.text)) for a, b in zip(left, right, strict=True)],
                        dtype=np.float64)

    def score_matrix(self, prefixes: Sequence[Prefix]) -> np.ndarray:
        """(N, N) scores of every pair of `prefixes` at once (the same values as `score`).

        Intersections as products of 0/1 word-indicator blocks (float32 sums of at most
        2^24 ones are exact integers), then the same division |A & B| / |A | B|."""
        from scipy import sparse  # a dependency of scikit-learn

        sets = [word_set(p.text) for p in prefixes]
        vocab = {w: i for i, w in enumerate(frozenset().union(*sets))}
        cols: list[int] = []
        for words in sets:
            cols.extend(map(vocab.__getitem__, words))
        sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        x = sparse.csc_matrix(sparse.csr_matrix(
            (np.ones(len(cols), dtype=np.float32), np.asarray(cols, dtype=np.int64), indptr),
            shape=(len(prefixes), max(len(vocab), 1))))
        inter = np.zeros((len(prefixes), len(prefixes)), dtype=np.int64)
        for start in range(0, x.shape[1], 4096):  # dense column blocks keep memory at N x 4096
            block = x[:, start:start + 4096].toarray()
            inter += np.rint(block @ block.T).astype(np.int64)
        union = sizes[:, None] + sizes[None, :] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            out = inter / union
        return np.where(union == 0, 1.0, out)
