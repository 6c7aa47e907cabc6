"""The judges: oracle, random, jaccard, features (and the registry), on hand-made and real prefixes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from judge_helpers import qwen_cache

from dp.cache import Cache
from dp.errors import DPError
from dp.judge import Prefix, load_judge
from dp.judge.base import JUDGES
from dp.judge.features import (
    FEATURE_NAMES,
    INPUT_NAMES,
    FeaturesJudge,
    pair_features,
    train_features,
)
from dp.judge.metrics import auroc
from dp.judge.pairs import build_pairs, pair_labels
from dp.judge.simple import pair_uniform


@pytest.fixture(scope="module")
def real_pairs(tmp_path_factory):
    path = qwen_cache(tmp_path_factory.mktemp("judges") / "qwen.duckdb")
    with Cache(path) as c:
        return build_pairs(c, "qwen", "tokens:60")


def P(tid, text="", cls=-1):
    return Prefix(tid, text, len(text.split()), cls)


def test_pair_labels_policy():
    # same class -> 1; different -> 0; one without answer -> 0; both without -> left out (-1)
    assert pair_labels([0, 0, 0, -1], [0, 1, -1, -1]).tolist() == [1, 0, 0, -1]


def test_oracle():
    j = load_judge("oracle")
    s = j.score([P(1, cls=0), P(1, cls=0), P(1, cls=-1), P(1, cls=2)], [P(2, cls=0), P(2, cls=1), P(2, cls=-1), P(2, cls=2)])
    assert s.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_random_is_a_pure_function_of_the_unordered_pair():
    a, b = np.arange(1000), np.arange(1000, 2000)[::-1]
    s = pair_uniform(0, a, b)
    assert np.array_equal(s, pair_uniform(0, b, a))
    assert np.array_equal(s[::-1], pair_uniform(0, a[::-1], b[::-1]))
    assert np.all((s >= 0) & (s < 1)) and abs(s.mean() - 0.5) < 0.05
    assert not np.array_equal(s, pair_uniform(1, a, b))
    j = load_judge("random", seed=3)
    assert j.name == "random:3"
    one = j.score([P(5)], [P(9)])
    assert one[0] == j.score([P(9), P(1)], [P(5), P(2)])[0] == pair_uniform(3, np.array([5]), np.array([9]))[0]


def test_jaccard_by_hand():
    j = load_judge("jaccard")
    s = j.score([P(1, "A b c"), P(3, ""), P(5, "x")], [P(2, "b C d"), P(4, ""), P(6, "y")])
    assert s.tolist() == [0.5, 1.0, 0.0]  # {b, c} / {a, b, c, d}; two empty prefixes; disjoint


def test_unknown_judge_lists_known():
    with pytest.raises(DPError, match="unknown judge 'nope' \\(known: .*embedding.*features.*oracle"):
        load_judge("nope")


def test_registry_names():
    assert {"oracle", "random", "jaccard", "embedding", "features"} <= set(JUDGES)


def test_oracle_and_random_auroc_on_real_pairs(real_pairs):
    left, right, y = real_pairs.left, real_pairs.right, real_pairs.labels
    assert 0.2 < y.mean() < 0.8
    assert auroc(load_judge("oracle").score(left, right), y) == 1.0
    assert 0.35 < auroc(load_judge("random").score(left, right), y) < 0.65


def test_features_are_symmetric(real_pairs):
    x = pair_features(real_pairs.left, real_pairs.right)
    assert x.shape == (real_pairs.n, len(FEATURE_NAMES))
    assert np.allclose(x, pair_features(real_pairs.right, real_pairs.left))
    assert np.all(np.isfinite(x))


def test_features_judge_trains_saves_and_loads_as_json(real_pairs, tmp_path):
    judge = train_features(real_pairs.left, real_pairs.right, real_pairs.labels, meta={"note": "test"})
    s = judge.score(real_pairs.left, real_pairs.right)
    assert np.all((s >= 0) & (s <= 1))
    assert auroc(s, real_pairs.labels) > 0.6
    judge.save(tmp_path)
    spec = json.loads((tmp_path / "judge.json").read_text())
    assert spec["type"] == "features" and spec["input_names"] == list(INPUT_NAMES) and spec["note"] == "test"
    signs = dict(zip(INPUT_NAMES, judge.coef))
    assert signs["answers_differ"] <= 0 and min(v for k, v in signs.items() if k.endswith("jaccard")) >= 0
    again = load_judge(tmp_path)
    assert isinstance(again, FeaturesJudge) and again.name == judge.name and judge.name.startswith("features:")
    assert np.allclose(again.score(real_pairs.left, real_pairs.right), s)


def test_features_file_of_other_features_is_refused(tmp_path):
    spec = {"type": "features", "feature_version": 1, "input_names": ["x"], "mean": [0], "scale": [1],
            "coef": [1], "intercept": 0}
    (tmp_path / "judge.json").write_text(json.dumps(spec))
    with pytest.raises(DPError, match="retrain"):
        load_judge(tmp_path)


def test_default_features_judge_is_shipped(real_pairs):
    judge = load_judge("features")
    assert judge.name.startswith("features:")
    s = judge.score(real_pairs.left[:20], real_pairs.right[:20])
    assert s.shape == (20,) and np.all((s >= 0) & (s <= 1))


@pytest.mark.slow
def test_embedding_judge(real_pairs):
    judge = load_judge("embedding")
    s = judge.score(real_pairs.left, real_pairs.right)
    assert np.all((s >= 0) & (s <= 1))
    same = judge.score([P(1, "the answer is 12")], [P(2, "the answer is 12")])
    assert same[0] == pytest.approx(1.0, abs=1e-5)
    assert 0.3 < auroc(s, real_pairs.labels) < 1.0


@pytest.mark.slow
def test_default_judge_on_the_imported_traces(real_cache):
    """The numbers of judge/default/README.md, on the real import (session fixture, ~1 min)."""
    from dp.judge.train import evaluate_judge

    res = evaluate_judge(real_cache, "qwen", "features", "tokens:100", store_scores=False)
    assert res["pairs"] == 2800 and res["auroc"] == pytest.approx(0.758, abs=0.01)
    assert evaluate_judge(real_cache, "qwen", "oracle", "words:25", store_scores=False)["auroc"] == 1.0
    esc = evaluate_judge(real_cache, "esc", "features", "words:25", max_pairs=10, store_scores=False)
    assert esc["pairs"] == 4990 and esc["auroc"] == pytest.approx(0.980, abs=0.01)
