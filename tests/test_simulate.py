"""Policies against hand computations on small hand-made problems, then the real traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp.judge.base import Prefix
from dp.judge.simple import OracleJudge
from dp.simulate.policies.base import Accounting, charge
from dp.simulate.policies.basic import Consensus, RandomPrune
from dp.simulate.policies.deepconf import DeepConf
from dp.simulate.policies.deepprune import DeepPrune
from dp.simulate.policies.sequential import ESC, Adaptive, beta_stop_probability
from dp.simulate.replay.context import ProblemContext
from dp.simulate.replay.driver import replay
from dp.simulate.replay.scores import PairScores
from tests.conftest import invoke

RNG = np.random.default_rng(0)


def ctx_of(classes, lengths=None, decision=None, correct_class=0, confidence=None):
    classes = np.asarray(classes, dtype=np.int64)
    n = classes.size
    lengths = np.full(n, 100, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    decision = np.full(n, 10, dtype=np.int64) if decision is None else np.asarray(decision, dtype=np.int64)
    prefixes = [Prefix(i, f"t{i}", int(decision[i]), int(c)) for i, c in enumerate(classes)]
    return ProblemContext(problem_id="p", trace_ids=np.arange(n), lengths=lengths, classes=classes,
                          correct=classes == correct_class, decision=np.minimum(decision, lengths),
                          scores=PairScores(OracleJudge(), "tokens:10", prefixes), confidence=confidence)


def test_charge_paper_and_concurrent():
    lengths, decision = np.array([10, 20, 30]), np.array([2, 5, 40])
    finished = np.array([[False, True, False]])
    assert charge(lengths, decision, finished).tolist() == [[2, 20, 30]]
    # concurrent: unfinished traces decode until the last decision point (30, capped by length)
    assert charge(lengths, decision, finished, Accounting.CONCURRENT).tolist() == [[10, 20, 30]]


def test_deepprune_clusters_prunes_and_charges_prefixes():
    ctx = ctx_of([0, 0, 1, 0, 1, 2])
    policy = DeepPrune(tau=0.5, K2=2)
    state = policy.begin(ctx, 1, RNG)
    for t in range(6):
        policy.on_prefix(state, np.array([t]))
    assert state.assign.tolist() == [[0, 0, 1, 0, 1, 2]]
    assert state.size[0, :3].tolist() == [3, 2, 1]
    # judge calls: t1 vs {0}; t2 vs {0,1}; t3 vs {0,1},{2}; t4 vs {0,1,3},{2}; t5 vs {0,1,3},{2,4}
    assert policy.pairs(state).tolist() == [1 + 2 + 3 + 4 + 5]
    finished = policy.finish(state)
    assert finished.sum() == 2 and set(np.flatnonzero(finished[0])) <= {0, 1, 3}
    plan = policy.plan(ctx, np.arange(6)[None, :], np.random.default_rng(1))
    assert plan.stop_at.sum() == 4 * 10 + 2 * 100  # pruned traces pay their prefix, finished ones all


def test_pruned_trace_costs_its_prefix():
    ctx = ctx_of([0, 0, 0], lengths=[50, 60, 70], decision=[5, 6, 7])
    plan = DeepPrune(tau=0.5, K2=1).plan(ctx, np.array([[0, 1, 2]]), np.random.default_rng(0))
    kept = int(np.flatnonzero(plan.voters[0])[0])
    expected = [5, 6, 7]
    expected[kept] = [50, 60, 70][kept]
    assert plan.stop_at[0].tolist() == expected


def test_deepprune_when_full_and_representatives():
    ctx = ctx_of([0, 0, 1, 0, 1, 2])
    join = DeepPrune(tau=0.5, K=2)
    s = join.begin(ctx, 1, RNG)
    for t in range(6):
        join.on_prefix(s, np.array([t]))
    assert s.assign[0, 5] == 0  # all similarities 0: joins the first-opened cluster
    prune = DeepPrune(tau=0.5, K=2, when_full="prune")
    s = prune.begin(ctx, 1, RNG)
    for t in range(6):
        prune.on_prefix(s, np.array([t]))
    assert s.assign[0, 5] == -2
    rep = DeepPrune(tau=0.5, final="representatives")
    plan = rep.plan(ctx, np.arange(6)[None, :], RNG)
    assert np.flatnonzero(plan.voters[0]).tolist() == [0, 2, 5]
    weighted = DeepPrune(tau=0.5, final="representatives-weighted")
    plan = weighted.plan(ctx, np.arange(6)[None, :], RNG)
    assert plan.weights[0, [0, 2, 5]].tolist() == [3, 2, 1]


def test_all_singletons_fall_back_to_k3_random_traces():
    ctx = ctx_of([0, 1, 2, 3, 4, 5])
    plan = DeepPrune(tau=0.5, K3=3).plan(ctx, np.arange(6)[None, :], RNG)
    assert plan.voters.sum() == 3


def test_reservoir_sample_is_bounded_by_k1():
    ctx = ctx_of([0] * 30)
    policy = DeepPrune(tau=0.5, K1=4)
    s = policy.begin(ctx, 3, RNG)
    for t in range(30):
        policy.on_prefix(s, np.full(3, t))
    assert (s.sample[:, 0, :] >= 0).sum(axis=1).tolist() == [4, 4, 4]
    # trace t >= 1 is compared with min(t, K1) members: 1 + 2 + 3 + 4 * 26
    assert policy.pairs(s).tolist() == [110, 110, 110]


def test_cons_has_zero_reduction_and_random_keeps_budget():
    ctx = ctx_of([0, 1, 0, 0], lengths=[10, 20, 30, 40])
    res = replay(Consensus(), [ctx], orders=5)
    assert res.token_reduction == 0.0 and res.tokens == 100 and res.accuracy == 1.0
    plan = RandomPrune(keep=2).plan(ctx, np.tile(np.arange(4), (7, 1)), RNG)
    assert (plan.voters.sum(axis=1) == 2).all()
    assert ((plan.stop_at == np.where(plan.voters, [10, 20, 30, 40], 10)).all())


def test_cons_on_ties_is_the_expected_value_of_a_random_tie_break():
    # Hand computation. Problem A: answers 0,0,1,1 with class 1 correct -> a fair tie-break is
    # right half the time. Problem B: 0,1,2 with class 2 correct -> right a third of the time.
    # Problem C: 1,1,0 (class 1 correct, no tie) -> always right. Expected: (1/2 + 1/3 + 1) / 3.
    a = ctx_of([0, 0, 1, 1], correct_class=1)
    b = ctx_of([0, 1, 2], correct_class=2)
    c = ctx_of([1, 1, 0], correct_class=1)
    for k, ctx in enumerate((a, b, c)):
        ctx.problem_id = f"p{k}"
    res = replay(Consensus(), [a, b, c], orders=4000, seed=3)
    assert res.accuracy == pytest.approx((1 / 2 + 1 / 3 + 1) / 3, abs=0.01)
    # the old rule (smallest class id) gave problems A and B to class 0: accuracy 1/3


def test_matched_controls_finish_as_many_traces_and_spend_no_more():
    from dp.simulate.replay.matched import count_matched, token_matched

    lengths, decision = np.array([100, 50, 80, 20, 60]), np.array([10, 5, 8, 2, 6])
    finished = np.array([[True, False, True, False, False], [False, False, False, True, False]])
    g = np.random.default_rng(0)
    cm = count_matched(lengths, decision, finished, g)
    assert cm.voters.sum(axis=1).tolist() == [2, 1]
    assert (cm.stop_at == np.where(cm.voters, lengths, decision)).all()  # every trace pays its prefix
    tm = token_matched(lengths, decision, finished, g)
    extra = lengths - decision
    budget = (finished * extra).sum(axis=1)  # [162, 18]
    assert budget.tolist() == [162, 18]
    spent = (tm.voters * extra).sum(axis=1)
    # the closest reachable spend: row 1 (budget 18) finishes nothing or one trace of 18..90 extra
    assert tm.voters[1].sum() <= 1 and abs(spent[1] - 18) <= 18
    # hand-computed: extras 10, 10, 10, 10, 18 and a budget of 28 (traces 0 and 4 finished). A random
    # order reaches exactly 28 (10+18, 18+10); from 10+10 it takes a third 10 (30: 2 over, nearer than
    # 20) but not the 18 (38: 10 over, farther than 20)
    lengths, decision = np.array([20, 20, 20, 20, 28]), np.full(5, 10)
    finished = np.tile([True, False, False, False, True], (300, 1))
    tm = token_matched(lengths, decision, finished, np.random.default_rng(1))
    spent = (tm.voters * (lengths - decision)).sum(axis=1)
    assert set(spent.tolist()) == {20, 28, 30}
    orders_10_10_10 = (spent == 30)
    assert tm.voters[orders_10_10_10, 4].sum() == 0 and (tm.voters[orders_10_10_10].sum(axis=1) == 3).all()


def test_deepprune_rows_carry_paired_differences():
    ctx = ctx_of([0, 0, 1, 0, 1, 2, 0, 0])
    res = replay(DeepPrune(tau=0.5, K2=2), [ctx], orders=20, seed=1).summary()
    for c in ("matched", "token_matched"):
        for k in ("tokens", "token_reduction", "accuracy", "pass_rate", "accuracy_diff", "accuracy_diff_se",
                  "tokens_diff", "tokens_diff_se"):
            assert f"{c}_{k}" in res, f"{c}_{k}"
    # count-matched: the same number of finished traces and prefixes -> the same tokens exactly here
    assert res["matched_tokens"] == res["tokens"] and res["matched_tokens_diff"] == 0.0
    assert res["accuracy"] - res["matched_accuracy"] == pytest.approx(res["matched_accuracy_diff"])
    assert res["prefix_share"] == pytest.approx(10 / 100)
    assert "matched_tokens" not in replay(Consensus(), [ctx], orders=2).summary()


def test_esc_stops_at_first_unanimous_window():
    ctx = ctx_of([0, 0, 1, 0, 0] + [0] * 5 + [1] * 5, lengths=np.arange(1, 16))
    plan = ESC(window=5).plan(ctx, np.arange(15)[None, :], RNG)
    assert plan.voters[0].tolist() == [True] * 10 + [False] * 5
    assert plan.stop_at.sum() == sum(range(1, 11))
    missing = ctx_of([-1] * 5 + [1] * 5)
    assert ESC(window=5).plan(missing, np.arange(10)[None, :], RNG).voters.sum() == 10


def test_adaptive_beta_criterion():
    assert beta_stop_probability(np.array([3.0]), np.array([0.0]))[0] == pytest.approx(1 - 0.5**4)
    ctx = ctx_of([0] * 10)
    plan = Adaptive(confidence=0.95).plan(ctx, np.arange(10)[None, :], RNG)
    assert plan.voters.sum() == 4  # 1 - 0.5^4 < 0.95 <= 1 - 0.5^5


def test_deepconf_threshold_stop_and_weights():
    # 4 traces, window 2, warm-up 2. Trace scores (lowest 2-token mean): 1.0, 3.0, 1.5, 2.5
    conf = [np.array([1.0, 1.0, 1.0]), np.array([3.0, 3.0, 3.0]),
            np.array([2.0, 1.0, 3.0, 3.0]), np.array([3.0, 2.0, 5.0])]
    ctx = ctx_of([0, 1, 1, 0], lengths=[3, 3, 4, 3], confidence=conf)
    plan = DeepConf(warmup=2, percentile=50.0, conf_window=2).plan(ctx, np.arange(4)[None, :], RNG)
    # threshold = median(1.0, 3.0) = 2.0; trace 2's first window mean is 1.5 < 2: stops after token 2
    assert plan.stop_at[0].tolist() == [3, 3, 2, 3]
    assert plan.voters[0].tolist() == [False, True, False, True]
    assert plan.weights[0].tolist() == pytest.approx([1.0, 3.0, 1.5, 2.5])


def test_deepconf_refuses_runs_without_confidence():
    from dp.errors import DPError

    with pytest.raises(DPError, match="confidence"):
        DeepConf().plan(ctx_of([0, 1]), np.arange(2)[None, :], RNG)


def test_real_traces_whole_table_and_oracle_bound(real_cache):
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--orders", "5", "--json",
               "--policy", "cons", "--policy", "deepprune", "--policy", "deepprune-oracle",
               "--policy", "esc", "--policy", "adaptive", "--policy", "random", "--K2", "4",
               "--judge", "jaccard")
    assert r.exit_code == 0, r.output
    rows = {row["policy"]: row for row in json.loads(r.stdout)}
    for row in rows.values():
        assert {"policy", "tokens", "token_reduction", "accuracy", "accuracy_std", "pass_rate",
                "judge_pairs"} <= row.keys()
    assert rows["cons"]["token_reduction"] == 0.0
    assert rows["deepprune"]["tokens"] < rows["cons"]["tokens"]
    assert rows["deepprune"]["judge_pairs"] > 0
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--orders", "3",
               "--policy", "deepconf-low")
    assert r.exit_code != 0 and "confidence" in r.output


def test_oracle_with_large_k_gives_the_majority_answer(real_cache):
    from dp.cache.store import Cache
    from dp.judge.truncation import TruncationRule
    from dp.simulate.replay.context import build_contexts
    from dp.votes import arrival_ranks, majority

    with Cache(real_cache) as cache:
        ctxs = build_contexts(cache, "qwen", TruncationRule.parse("tokens:50"), OracleJudge())
    policy = DeepPrune(tau=0.5, K=64, K2=64)
    for ctx in ctxs:
        counts = np.bincount(ctx.classes[ctx.classes >= 0])
        if counts.size == 0 or (counts == counts.max()).sum() > 1:
            continue  # ties: cons@N itself depends on the tie rule
        orders = np.random.default_rng(0).permuted(np.tile(np.arange(ctx.n), (5, 1)), axis=1)
        plan = policy.plan(ctx, orders, np.random.default_rng(1))
        ranks = arrival_ranks(orders)
        winners = {int(majority(ctx.classes[plan.voters[r]], ranks[r][plan.voters[r]])) for r in range(5)}
        assert winners == {majority(ctx.classes, ranks[0])}


def test_bad_settings_are_one_line_errors(real_cache):
    for args, msg in ((["--tau", "1.5"], "tau"), (["--K", "0"], "K must"), (["--policy", "nope"], "unknown policy"),
                      (["--judge", "nope"], "unknown judge"), (["--run", "absent"], "no run"),
                      (["--truncate", "lines:3"], "truncation")):
        r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--orders", "2", *args)
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert len(r.output.strip().splitlines()) == 1


def test_in_sample_judges_are_flagged_and_crossfit_is_not(real_cache):
    # the shipped default judge was trained on the two shared files: in-sample on both
    r = invoke("judge", "eval", "--cache", real_cache, "--run", "qwen", "--judge", "features",
               "--truncate", "tokens:100", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["judge_in_sample"] is True and "in-sample" in r.stderr
    r = invoke("judge", "eval", "--cache", real_cache, "--run", "qwen", "--judge", "jaccard",
               "--truncate", "tokens:100", "--json")
    assert json.loads(r.stdout)["judge_in_sample"] is False and "in-sample" not in r.stderr
    r = invoke("judge", "eval", "--cache", real_cache, "--run", "qwen", "--judge", "features", "--crossfit", "5",
               "--truncate", "tokens:100", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["judge_in_sample"] is False and out["crossfit"] == 5 and len(set(out["fold_judges"])) == 5
    assert 0.5 < out["auroc"] < 1.0 and "in-sample" not in r.stderr
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--K2", "4",
               "--truncate", "tokens:100", "--orders", "3", "--no-store", "--json")
    row = json.loads(r.stdout)[0]
    assert row["judge_in_sample"] is True and "in-sample" in r.stderr
    assert row["params"]["judge"] == "features:5a3e3a0f" and row["params"]["judge_arg"] == "features"
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--K2", "4",
               "--truncate", "tokens:100", "--orders", "3", "--no-store", "--json", "--crossfit", "3")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)[0]
    assert row["judge_in_sample"] is False and row["params"]["judge"].startswith("crossfit3:features:")
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--judge", "jaccard", "--crossfit", "3",
               "--orders", "2", "--no-store")
    assert r.exit_code != 0 and "trainable" in r.stderr


def test_settings_that_cannot_prune_are_reported(real_cache):
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--judge", "jaccard",
               "--truncate", "words:25", "--orders", "2", "--no-store", "--json")
    row = json.loads(r.stdout)[0]
    assert row["prefix_share"] > 0.5 and "prefix_share" in r.stderr
    assert "N <= K2" in r.stderr  # 8 traces, K2 = 20
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--judge", "jaccard",
               "--truncate", "tokens:20", "--K2", "4", "--orders", "2", "--no-store", "--json")
    row = json.loads(r.stdout)[0]
    assert row["prefix_share"] < 0.1 and "warning" not in r.stderr


def test_prefix_length_orders_only_prefix_policies_and_accounting_is_stored(real_cache):
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "random", "--policy", "esc",
               "--policy", "adaptive", "--order", "prefix-length", "--orders", "4", "--accounting", "concurrent",
               "--json", "--limit", "5")
    assert r.exit_code == 0, r.output
    rows = {x["policy"]: x for x in json.loads(r.stdout)}
    assert (rows["random"]["order_kind"], rows["random"]["orders"]) == ("prefix-length", 1)
    for p in ("esc", "adaptive"):
        assert (rows[p]["order_kind"], rows[p]["orders"]) == ("random", 4)
        assert rows[p]["params"]["accounting"] == "concurrent"


def test_bad_sweeps_settings_and_limits_are_one_line_errors(real_cache):
    for args, msg in ((["--sweep", "tua=0.1:0.3:0.1"], "cannot sweep 'tua'"),
                      (["--sweep", "window=3,5"], "cannot sweep 'window'"),
                      (["--limit", "0"], "limit must be >= 1"), (["--orders", "0"], "orders must be >= 1")):
        r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--no-store", *args)
        assert r.exit_code != 0 and msg in r.stderr, (args, r.output)
        assert r.stderr.count("\n") == 1
    from dp.cache.store import Cache
    from dp.errors import DPError
    from dp.simulate.replay.sweep import SimSettings, simulate
    with Cache(real_cache) as cache, pytest.raises(DPError, match="unknown setting 'tua'"):
        simulate(cache, SimSettings(run="qwen", params={"tua": 0.5}), store=False)


def test_tie_rule_leaves_cons_on_the_esc_file_within_half_a_point(real_cache):
    from dp.cache.store import Cache

    r = invoke("simulate", "--cache", real_cache, "--run", "esc", "--policy", "cons", "--orders", "50",
               "--no-store", "--json")
    new = json.loads(r.stdout)[0]["accuracy"]
    with Cache(real_cache) as cache:
        problems = cache.load_run("esc")
    old = []  # the old rule, by hand: a tie went to the smallest class id (the file's first answer)
    for p in problems:
        counts = np.bincount(p.classes[p.classes >= 0])
        old.append(bool(counts.size) and int(counts.argmax()) in p.correct_classes)
    assert abs(new - np.mean(old)) <= 0.005, (new, np.mean(old))
