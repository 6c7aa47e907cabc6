"""DeepConf's confidence (`dp.confidence`), pinned by hand, and its plain-Python one-step form
(`row_confidence`, `stored_scalar`: the live path's one-token delta) equal to the bit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dp.cache.tables import stored_float, stored_scalar
from dp.confidence import group_confidence, row_confidence, token_confidence, trace_score


def test_token_confidence_by_hand():
    rows = np.array([
        [-0.5, -1.0, -2.0, -4.0],        # top 3 of 4: -(-0.5 - 1 - 2) / 3 = 3.5 / 3
        [-3.0, np.nan, -1.0, -np.inf],   # two finite: -(-1 - 3) / 2 = 2
        [np.nan, np.nan, -np.inf, np.inf],  # none finite: NaN, never 0
    ])
    got = token_confidence(rows, k=3)
    assert got.dtype == np.float32
    assert got[0] == np.float32(3.5 / 3) and got[1] == np.float32(2.0) and np.isnan(got[2])


def test_group_confidence_and_trace_score_by_hand():
    conf = np.array([4.0, 2.0, 6.0, 1.0, 3.0])
    assert group_confidence(conf, 2).tolist() == [3.0, 4.0, 3.5, 2.0]
    assert group_confidence(conf, 9).tolist() == [3.2]  # shorter than the window: one group, its mean
    assert trace_score(conf, 2) == 2.0 and math.isnan(trace_score(np.zeros(0), 2))


_lp = st.one_of(st.floats(-30, 0, width=32), st.just(float("-inf")), st.just(float("nan")))


@settings(max_examples=400, deadline=None)
@given(st.lists(_lp, min_size=0, max_size=24), st.integers(1, 21))
def test_row_confidence_is_token_confidence_to_the_bit(row, k):
    want = token_confidence(np.asarray([row], dtype=np.float32).reshape(1, len(row)), k)[0]
    got = row_confidence(row, k)
    assert (math.isnan(got) and np.isnan(want)) or np.float32(got) == want
    assert (math.isnan(got) and np.isnan(want)) or stored_scalar(got) == stored_float([want])[0]


@settings(max_examples=400, deadline=None)
@given(st.floats(-100, 100, width=32))
def test_stored_scalar_is_stored_float_to_the_bit(x):
    assert np.float32(stored_scalar(x)) == stored_float([x])[0]


def test_stored_scalar_on_halves_rounds_as_numpy_does():
    for x in (0.0005, 0.0015, 0.0025, 2.5e-3, 1.2345, -0.0005, 7.0005, 12.3455):
        assert np.float32(stored_scalar(x)) == stored_float([x])[0], x
    assert math.isnan(stored_scalar(math.nan))
