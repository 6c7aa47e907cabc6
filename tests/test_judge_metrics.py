"""AUROC and TNR at FNR = 0.2 on numbers worked out by hand."""

from __future__ import annotations

import pytest

from dp.errors import DPError
from dp.judge.metrics import auroc, fnr_threshold, judge_metrics, tnr_at_fnr


def test_auroc_by_hand():
    # positives 0.9 0.8 0.3, negatives 0.7 0.2: 5 of the 6 (pos, neg) pairs are ordered right
    assert auroc([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0]) == pytest.approx(5 / 6)


def test_auroc_ties_count_half():
    assert auroc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_tnr_at_fnr_by_hand():
    # 5 positives: floor(0.2 * 5) = 1 -> threshold = 2nd smallest positive = 0.5 (4 of 5 stay >= 0.5)
    pos, neg = [0.1, 0.5, 0.6, 0.7, 0.9], [0.3, 0.45, 0.55, 0.95]
    assert fnr_threshold(pos) == 0.5
    assert tnr_at_fnr(pos + neg, [1] * 5 + [0] * 4) == pytest.approx(0.5)  # 0.3 and 0.45 caught


def test_tnr_at_fnr_three_positives():
    # floor(0.6) = 0 -> threshold = smallest positive 0.3; negative 0.2 caught, 0.7 not
    assert tnr_at_fnr([0.9, 0.8, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0]) == pytest.approx(0.5)


def test_tnr_ties_at_threshold_are_not_caught():
    assert tnr_at_fnr([0.5] * 5 + [0.4, 0.5], [1] * 5 + [0, 0]) == pytest.approx(0.5)


def test_perfect_separation():
    m = judge_metrics([0.9, 0.8, 0.1], [1, 1, 0])
    assert m == {"auroc": 1.0, "tnr_at_fnr_0_2": 1.0, "pairs": 3, "positive_rate": pytest.approx(2 / 3)}


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_one_label_is_an_error(labels):
    with pytest.raises(DPError, match="^AUROC undefined: pairs of both labels needed$"):
        auroc([0.1, 0.2, 0.3], labels)
    with pytest.raises(DPError, match="both labels"):
        tnr_at_fnr([0.1, 0.2, 0.3], labels)
