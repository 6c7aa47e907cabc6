"""The online halves of the policies that the live runner drives: each is checked against the
replay (`plan`) it must equal, by hand where the numbers are small, over random streams otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from dp.simulate.policies.deepconf import DeepConf, _profile
from dp.simulate.policies.sequential import ESC, Adaptive
from dp.simulate.policies.slimsc import SlimSC, segment_bounds
from dp.simulate.replay.context import ProblemContext

RNG = np.random.default_rng(0)


def ctx_of(classes, lengths=None, confidence=None, texts=None):
    classes = np.asarray(classes, dtype=np.int64)
    n = classes.size
    lengths = np.full(n, 100, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    texts_at = None
    if texts is not None:  # one character per token
        texts_at = lambda pos, k: [texts[int(p)][: int(kk)] for p, kk in zip(pos, k, strict=True)]  # noqa: E731
    return ProblemContext(problem_id="p", trace_ids=np.arange(n), lengths=lengths, classes=classes,
                          correct=classes == 0, decision=np.zeros(n, np.int64), confidence=confidence,
                          texts_at=texts_at)


def test_adaptive_waves_check_only_at_wave_ends():
    ctx = ctx_of([0] * 10)
    # one at a time it stops after 4 agreeing traces (1 - 0.5^4 < 0.95 <= 1 - 0.5^5 at v1 = 4, v2 = 0)
    assert Adaptive(confidence=0.95).plan(ctx, np.arange(10)[None, :], RNG).voters.sum() == 4
    # in waves of 3 the criterion is first checked after 3 (not met), then after 6
    assert Adaptive(confidence=0.95, wave=3).plan(ctx, np.arange(10)[None, :], RNG).voters.sum() == 6


def test_wave_feed_is_the_replay_one_wave_at_a_time():
    """Feeding waves by hand (what the live driver does, R = 1) stops where `plan` stops."""
    rng = np.random.default_rng(3)
    for policy in (ESC(window=3), Adaptive(confidence=0.9, wave=2), Adaptive(confidence=0.8)):
        for _ in range(50):
            classes = rng.integers(-1, 3, size=13)
            order = rng.permutation(13)
            plan = policy.plan(ctx_of(classes), order[None, :], RNG)
            state, a = policy.begin(13, 1), 0
            while a < 13:
                b = min(a + policy.wave_size, 13)
                stop = policy.feed(state, classes[order[a:b]][None, :])[0]
                a = b
                if stop:
                    break
            assert sorted(np.flatnonzero(plan.voters[0])) == sorted(order[:a])


def test_deepconf_monitor_stops_where_the_replay_stops():
    """Random confidences, thresholds and delta sizes: the online monitor gives the replay's stop."""
    rng = np.random.default_rng(0)
    dc = DeepConf(conf_window=8)
    for _ in range(2000):
        n = int(rng.integers(0, 40))
        conf = np.round(rng.random(n) * 3, 3).astype(np.float32)
        start, mins = _profile(conf, 8)
        thr = float(rng.random() * 3)
        j = np.searchsorted(-mins, -thr, side="right")
        expected = start + j + 1 if j < mins.size else None
        m, pos = dc.monitor(thr), 0
        while pos < n:
            k = int(rng.integers(1, 5))
            m.feed(conf[pos:pos + k])
            pos += k
        assert m.feed(np.zeros(0, np.float32), done=True) == expected


def test_deepconf_monitor_by_hand():
    # window 2, cut 2.0: running means 3, 2.5, 1.5 -> below the cut after token 3
    m = DeepConf(conf_window=2).monitor(2.0)
    assert m.feed(np.array([3.0, 2.0], np.float32)) is None
    assert m.feed(np.array([1.0], np.float32)) == 3
    # a trace shorter than the window is checked once, at its end, on its overall mean
    short = DeepConf(conf_window=4).monitor(2.0)
    assert short.feed(np.array([1.0, 2.5], np.float32)) is None
    assert short.feed(np.zeros(0, np.float32), done=True) == 2


def test_slimsc_segments_and_decisions_by_hand():
    # every = 2 tokens: checkpoints strictly inside each trace (c x 2 < length)
    t, c = segment_bounds(np.array([5, 2, 3]), 2)
    assert t.tolist() == [0, 0, 2] and c.tolist() == [1, 2, 1]

    class Table:  # a deterministic stand-in for MiniLM: unit vectors by segment text
        def embed(self, texts):
            table = {"ab": [1, 0], "xy": [0.6, 0.8], "cd": [0, 1], "ef": [0, 1]}
            return np.array([table[x] for x in texts], dtype=np.float32)

    ctx = ctx_of([0, 1, 0], lengths=[5, 5, 5], texts=["abcdX", "xyefY", "abcdZ"])
    plan = SlimSC(similarity=0.9, every=2, embedder=Table()).plan(ctx, np.array([[0, 1, 2], [2, 1, 0]]), RNG)
    # order 0,1,2: c=1 "ab" kept, "xy" kept (cos 0.6), "ab" pruned at 2; c=2 "cd" kept, "ef" pruned at 4
    assert plan.stop_at[0].tolist() == [5, 4, 2] and plan.voters[0].tolist() == [True, False, False]
    # order 2,1,0: the mirror image
    assert plan.stop_at[1].tolist() == [2, 4, 5] and plan.voters[1].tolist() == [False, False, True]
    assert plan.judge_pairs.tolist() == [4, 4]  # similarities looked at: 0 + 1 + 2 at c=1, 0 + 1 at c=2


def test_slimsc_online_decide_equals_the_replay():
    """The live driver feeds one trace at a time with its cosines to the kept ones; random
    unit vectors, orders and thresholds: the same traces are pruned at the same checkpoints."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, every = 7, 4
        lengths = rng.integers(1, 20, size=n)
        t_of, c_of = segment_bounds(lengths, every)
        emb = rng.normal(size=(t_of.size, 3)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        policy = SlimSC(similarity=float(rng.uniform(0.3, 0.95)), every=every)
        ctx = ctx_of(np.zeros(n), lengths=lengths)
        ctx._memo[("slimsc-segments", every)] = (t_of, c_of, emb)
        order = rng.permutation(n)
        plan = policy.plan(ctx, order[None, :], RNG)
        state = policy.begin(n, 1)
        for c in np.unique(c_of):
            table = np.zeros((n, 3), np.float32)
            for t in order:
                at = np.flatnonzero((t_of == t) & (c_of == c))
                if at.size and state.pruned_at[0, t] == 0:
                    table[t] = emb[at[0]]
                    policy.decide(state, int(c), np.array([t]), (table @ emb[at[0]])[None, :])
        assert (np.where(state.pruned_at[0] == 0, lengths, state.pruned_at[0]) == plan.stop_at[0]).all()


def test_merged_vllm_deltas_are_read_back_position_by_position():
    """vLLM merges lagging deltas through a dict per position, dropping the sampled token's
    entry when it is also in the top k; `_positions` recovers the (sampled, top-k) layout."""
    from vllm.logprobs import FlatLogprobs, Logprob

    from dp.generate.stream import _positions

    k1 = 4  # sampled + top 3
    rows = [  # (sampled id, its logprob, its rank), top-3 ids and logprobs
        ((7, -0.1, 1), [7, 8, 9], [-0.1, -2.0, -3.0]),  # sampled = rank 1
        ((5, -4.0, 9), [1, 2, 3], [-0.5, -1.0, -1.5]),  # sampled outside the top 3
        ((2, -1.0, 2), [1, 2, 3], [-0.5, -1.0, -1.5]),  # sampled = rank 2
    ]
    one = FlatLogprobs()
    for (sid, slp, srank), tids, tlps in rows:
        one.append_fast([sid, *tids], [slp, *tlps], iter([srank, 1, 2, 3]), [None] * 4)
    direct = _positions(one, 3, k1)
    merged = FlatLogprobs()
    merged.extend(one)  # what RequestOutput.add does when deltas are merged
    assert len(merged.logprobs) < 3 * k1  # entries were dropped
    again = _positions(merged, 3, k1)
    for a, b in zip(direct, again, strict=True):
        assert np.array_equal(a, b)
    assert direct[1][:, 0].tolist() == [7, 5, 2] and direct[0][2, 1:].tolist() == pytest.approx([-0.5, -1.0, -1.5])
    assert Logprob  # the real vLLM container, not a stand-in
