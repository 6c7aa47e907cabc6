"""Scores go through the judge-score cache: a cached pair is never scored again."""

from __future__ import annotations

import numpy as np
import pytest
from judge_helpers import make_cache

from dp.cache import Cache
from dp.judge import Prefix
from dp.judge.pairs import build_pairs
from dp.judge.scoring import score_pairs
from dp.judge.simple import JaccardJudge

PROBLEMS = {
    "a": ["so x = 2. The answer is 2.", "so x = 2, thus the answer is 2.", "wait x = 3. The answer is 3.",
          "no answer here"],
    "b": ["hmm the answer is 7.", "but the answer is 8.", "so the answer is 7."],
}


class CountingJudge:
    """Jaccard, but cacheable and counting the pairs it is asked to score."""

    name = "counting"
    cacheable = True

    def __init__(self):
        self.calls: list[int] = []

    def score(self, left, right):
        self.calls.append(len(left))
        return JaccardJudge().score(left, right)


@pytest.fixture()
def cache_path(tmp_path):
    return make_cache(tmp_path / "c.duckdb", "r", PROBLEMS)


def test_pairs_by_hand(cache_path):
    with Cache(cache_path) as c:
        pairs = build_pairs(c, "r", "words:1")
    # problem a: 4 traces -> 6 pairs; b: 3 -> 3 pairs (no pair with two answerless traces)
    assert pairs.n == 9
    labels = dict(zip(zip(pairs.left, pairs.right), pairs.labels))
    by_text = {(a.text, b.text): int(v) for (a, b), v in labels.items()}
    assert by_text[("so", "so")] == 1  # words:1 cuts both a-traces after "so"
    assert pairs.labels.tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0]
    assert pairs.left[2].n_tokens == 1 and pairs.right[2].text == "no answer here"
    over = None
    with Cache(cache_path) as c:
        over = build_pairs(c, "r", "words:1", oversample_negative=2)
    assert over.n == 9 + 7 and over.positive_rate == pytest.approx(2 / 16)
    with Cache(cache_path) as c:
        few = build_pairs(c, "r", "words:1", max_pairs_per_problem=2, seed=1)
        again = build_pairs(c, "r", "words:1", max_pairs_per_problem=2, seed=1)
    assert few.n == 4 and np.array_equal(few.a_ids, again.a_ids) and np.array_equal(few.b_ids, again.b_ids)


def test_cache_hit_means_the_judge_is_not_called(cache_path):
    judge = CountingJudge()
    with Cache(cache_path, write=True) as c:
        pairs = build_pairs(c, "r", "tokens:4")
        stats = {}
        first = score_pairs(judge, pairs.rule, pairs.left, pairs.right, cache=c, stats=stats)
        assert judge.calls == [9] and stats == {"pairs": 9, "cached": 0, "computed": 9}
        # swapped sides and duplicates: all answered from the cache
        again = score_pairs(judge, pairs.rule, pairs.right + pairs.left, pairs.left + pairs.right, cache=c, stats=stats)
        assert judge.calls == [9] and stats["computed"] == 0
        assert np.allclose(again, np.r_[first, first])
        # another rule is another key
        score_pairs(judge, "tokens:5", pairs.left, pairs.right, cache=c)
        assert judge.calls == [9, 9]


def test_duplicates_scored_once_and_batches(cache_path):
    judge = CountingJudge()
    left = [Prefix(1, "a b", 2), Prefix(2, "b c", 2), Prefix(1, "a b", 2)]
    right = [Prefix(2, "b c", 2), Prefix(1, "a b", 2), Prefix(3, "c", 1)]
    with Cache(cache_path, write=True) as c:
        s = score_pairs(judge, "tokens:9", left, right, cache=c, batch_size=1)
    assert judge.calls == [1, 1] and s.tolist() == [1 / 3, 1 / 3, 0.0]


def test_read_only_cache_scores_without_storing(cache_path):
    judge = CountingJudge()
    with Cache(cache_path) as c:
        pairs = build_pairs(c, "r", "tokens:4")
        score_pairs(judge, pairs.rule, pairs.left, pairs.right, cache=c)
        score_pairs(judge, pairs.rule, pairs.left, pairs.right, cache=c)
    assert judge.calls == [9, 9]
