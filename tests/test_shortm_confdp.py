"""short-m@k and confidence-weighted DeepPrune against hand computations (method.md section 4)."""

from __future__ import annotations

import numpy as np
import pytest

from dp.errors import DPError
from dp.judge.base import Prefix
from dp.judge.simple import OracleJudge
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.context import ProblemContext
from dp.simulate.replay.driver import replay
from dp.simulate.replay.scores import PairScores
from dp.votes import majority_rows


def ctx_of(classes, lengths, correct_class=0, clusters=None, confidence=None, decision=None):
    """A problem whose oracle judge groups prefixes by `clusters` (default: the answer classes)."""
    classes = np.asarray(classes, dtype=np.int64)
    n = classes.size
    clusters = classes if clusters is None else np.asarray(clusters)
    decision = np.full(n, 2, dtype=np.int64) if decision is None else np.asarray(decision, dtype=np.int64)
    prefixes = [Prefix(i, f"t{i}", int(decision[i]), int(c)) for i, c in enumerate(clusters)]
    return ProblemContext(problem_id="p", trace_ids=np.arange(n), lengths=np.asarray(lengths, dtype=np.int64),
                          classes=classes, correct=classes == correct_class, decision=decision,
                          scores=PairScores(OracleJudge(), "tokens:2", prefixes), confidence=confidence)


# lengths 10 4 7 4 9; answers 0 1 0 2 0 (0 correct)
SHORT = dict(classes=[0, 1, 0, 2, 0], lengths=[10, 4, 7, 4, 9])


def test_short_m_at_k_by_hand():
    ctx = ctx_of(**SHORT)
    orders = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    plan = make_policy("short-m@k", m=3).plan(ctx, orders)
    # the 3 shortest (1, 3: length 4; 2: length 7) finish and vote; every trace pays min(length, 7)
    assert plan.voters.tolist() == [[False, True, True, True, False]] * 2
    assert plan.stop_at.tolist() == [[7, 4, 7, 4, 7]] * 2
    # a three-way tie (classes 1, 2, 0): the class of the first finisher wins; traces 1 and 3
    # both end after 4 tokens, so the arrival order decides which finished first
    win = majority_rows(ctx.classes, plan.voters, plan.ranks)
    assert win.tolist() == [1, 2]
    # m = 1: only the first finisher votes, everyone pays 4 tokens
    one = make_policy("short-m@k", m=1).plan(ctx, orders)
    assert one.voters.sum(axis=1).tolist() == [1, 1] and one.stop_at.sum(axis=1).tolist() == [20, 20]
    # m >= N is cons@N
    every = make_policy("short-m@k", m=9).plan(ctx, orders)
    assert every.voters.all() and every.stop_at.sum(axis=1).tolist() == [34, 34]


def test_short_m_at_k_replay_numbers():
    # no equal lengths: every order gives the same plan. m = 3 -> traces 1 (3), 2 (5), 4 (6) vote
    # answers 0, 1, 0 -> answer 0 (correct); tokens min(length, 6) = 6 + 3 + 5 + 6 + 6 = 26 of 8+3+5+9+6 = 31
    ctx = ctx_of(classes=[1, 0, 1, 1, 0], lengths=[8, 3, 5, 9, 6], correct_class=0)
    r = replay(make_policy("short-m@k", m=3), [ctx], orders=7, seed=3)
    assert r.tokens == 26 and r.full_tokens == 31 and r.accuracy == 1.0 and r.accuracy_std == 0.0
    r1 = replay(make_policy("short-m@k", m=2), [ctx], orders=7, seed=3)  # 1 (0) and 2 (1): tie -> trace 1
    assert r1.tokens == 5 + 3 + 5 + 5 + 5 and r1.accuracy == 1.0
    with pytest.raises(DPError, match="m must be"):
        make_policy("short-m@k", m=0)


def conf_ctx(conf0):
    # prefixes cluster as {0, 1} and {2, 3}; answers 0 1 1 0; class 1 is correct
    conf = [np.array(conf0), np.array([1.0, 0.9, 0.1, 0.9]), np.full(4, 0.5), np.full(4, 0.5)]
    return ctx_of(classes=[0, 1, 1, 0], lengths=[4, 4, 4, 4], correct_class=1, clusters=[0, 0, 1, 1],
                  confidence=[c.astype(np.float32) for c in conf])


def test_confidence_weighted_deepprune_by_hand():
    order = np.array([[0, 1, 2, 3]])
    kw = dict(tau=0.5, K2=2, conf_window=2)
    # clusters {0, 1} (opened first) and {2, 3} tie in size: the first one's two traces finish.
    # Unweighted they tie 1-1 (answers 0 and 1) and trace 0 arrived first: answer 0 (wrong).
    dp_plan = make_policy("deepprune", **kw).plan(conf_ctx([0.3] * 4), order, np.random.default_rng(1))
    assert dp_plan.voters.tolist() == [[True, True, False, False]] and dp_plan.weights is None
    assert majority_rows(np.array([0, 1, 1, 0]), dp_plan.voters, [0, 1, 2, 3]).tolist() == [0]
    # trace scores, windows of 2: trace 1 = min(0.95, 0.5, 0.5) = 0.5; trace 0 = 0.3 -> answer 1 wins
    ctx = conf_ctx([0.3] * 4)
    plan = make_policy("deepprune-conf", **kw).plan(ctx, order, np.random.default_rng(1))
    assert plan.voters.tolist() == dp_plan.voters.tolist()  # the same finishers as DeepPrune
    assert plan.weights[0, :2] == pytest.approx([0.3, 0.5], abs=1e-6)
    assert majority_rows(ctx.classes, plan.voters, [0, 1, 2, 3], plan.weights).tolist() == [1]
    assert replay(make_policy("deepprune-conf", **kw), [ctx], orders=1, order_kind="prefix-length").accuracy == 1.0
    # trace 0 now scores min(0.6, 0.6, 0.6) = 0.6 > 0.5: answer 0 wins
    ctx6 = conf_ctx([0.6] * 4)
    plan6 = make_policy("deepprune-conf", **kw).plan(ctx6, order, np.random.default_rng(1))
    assert majority_rows(ctx6.classes, plan6.voters, [0, 1, 2, 3], plan6.weights).tolist() == [0]


def test_confidence_weighted_deepprune_without_logprobs_is_deepprune():
    rng = np.random.default_rng(5)
    n = 12
    classes = rng.integers(0, 3, n)
    ctx = ctx_of(classes=classes, lengths=rng.integers(5, 50, n), clusters=rng.integers(0, 4, n))
    orders = np.argsort(rng.random((6, n)), axis=1)
    a = make_policy("deepprune-conf", K2=3).plan(ctx, orders, np.random.default_rng(2))
    b = make_policy("deepprune", K2=3).plan(ctx, orders, np.random.default_rng(2))
    assert a.weights is None and (a.voters == b.voters).all() and (a.stop_at == b.stop_at).all()
    assert isinstance(make_policy("deepprune-conf"), DeepPrune)
