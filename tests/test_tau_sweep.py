"""The shared tau sweep (`dp.simulate.replay.tau_sweep`) against one replay per tau, on a shipped trace file.

Every point of a sweep run in one pass must equal, number for number, the replay of
that tau alone: tokens, accuracy, pass rate, judge pairs, the matched controls and
every per-problem row. Also: the whole-matrix scorers equal pairwise scoring.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp.cache.store import Cache
from dp.judge.base import load_judge
from dp.judge.prefix_reader import read_prefixes
from dp.judge.truncation import TruncationRule
from dp.seeds import rng as make_rng
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.context import build_contexts
from dp.simulate.replay.driver import make_orders, replay, replay_taus
from dp.simulate.replay.tau_sweep import plan_taus
from tests.conftest import invoke

TAUS = [round(0.05 * i, 2) for i in range(1, 20)]  # the 19-point sweep of the paper figures
RULE = TruncationRule.parse("tokens:30")


@pytest.fixture(scope="module")
def esc_contexts(real_cache):
    with Cache(real_cache) as c:
        jac = build_contexts(c, "esc", RULE, load_judge("jaccard"), limit=20)
        orc = build_contexts(c, "esc", RULE, load_judge("oracle"), limit=20)
    for ctx in (*jac, *orc):
        ctx.scores.fill_all()
    return {"jaccard": jac, "oracle": orc}


def _same(a, b) -> None:
    assert json.dumps(a.summary(), sort_keys=True) == json.dumps(b.summary(), sort_keys=True)
    assert a.per_problem == b.per_problem


@pytest.mark.parametrize("judge,settings", [
    ("jaccard", {}),
    ("oracle", {}),
    ("jaccard", {"K": 3, "when_full": "prune"}),  # dropped rows: each block draws its own count
    ("oracle", {"K": 2, "final": "representatives-weighted"}),  # forced joins: mixed clusters
])
def test_shared_sweep_equals_each_tau_alone(esc_contexts, judge, settings):
    ctxs = esc_contexts[judge]
    policies = [make_policy("deepprune", tau=t, **settings) for t in TAUS]
    shared = replay_taus(policies, ctxs, orders=8, seed=3)
    alone = [replay(p, ctxs, orders=8, seed=3) for p in policies]
    for a, b in zip(shared, alone, strict=True):
        _same(a, b)
    assert len({r.tokens for r in alone}) > 1 or judge == "oracle"  # the sweep moves the jaccard points
    assert all(r.controls["matched_accuracy_diff"] == b.controls["matched_accuracy_diff"]
               for r, b in zip(shared, alone, strict=True))


def test_oracle_sweep_is_one_replay(esc_contexts):
    """0/1 scores in pure clusters: every tau in (0, 1) decides alike, so the probe's plan serves all."""
    ctx = esc_contexts["oracle"][0]
    policy = make_policy("deepprune", tau=0.5)
    orders = make_orders(ctx, 12, "random", 0)
    plans = plan_taus(policy, ctx, orders, lambda: make_rng(0, "deepprune", ctx.problem_id), TAUS)
    assert len({id(p) for p in plans}) == 1
    with_one = plan_taus(policy, ctx, orders, lambda: make_rng(0, "deepprune", ctx.problem_id), [*TAUS, 1.0])
    assert with_one[-1] is not with_one[0]  # tau = 1 never joins: its own replay
    assert with_one[-1].voters.sum() != with_one[0].voters.sum() or ctx.n <= 20


def test_sweep_points_equal_single_runs_through_the_cli(real_cache):
    """`dp simulate --sweep` stores the same numbers as one `dp simulate --tau` per point."""
    common = ["simulate", "--cache", real_cache, "--run", "esc", "--judge", "jaccard", "--truncate", "tokens:30",
              "--limit", "25", "--orders", "8", "--policy", "deepprune", "--policy", "deepprune-oracle",
              "--json", "--no-store"]
    r = invoke(*common, "--sweep", "tau=0.2,0.6")
    assert r.exit_code == 0, r.output
    swept = json.loads(r.output)
    singles = []
    for tau in ("0.2", "0.6"):
        r = invoke(*common, "--tau", tau)
        assert r.exit_code == 0, r.output
        singles += json.loads(r.output)
    key = lambda x: (x["policy"], x["params"]["tau"])  # noqa: E731
    drop = ("git_hash", "dp_version", "created_at")
    assert [{k: v for k, v in x.items() if k not in drop} for x in sorted(swept, key=key)] == \
           [{k: v for k, v in x.items() if k not in drop} for x in sorted(singles, key=key)]


@pytest.mark.parametrize("name", ["jaccard", "oracle", "random"])
def test_score_matrix_equals_pairwise_scores(real_cache, name):
    with Cache(real_cache) as c:
        p = c.load_run("qwen")[0]
        _, prefixes = read_prefixes(c, p.trace_ids, p.lengths, p.classes, TruncationRule.parse("words:25"))
    judge = load_judge(name, seed=4)
    m = judge.score_matrix(prefixes)
    iu = np.triu_indices(len(prefixes), k=1)
    pairwise = judge.score([prefixes[i] for i in iu[0]], [prefixes[j] for j in iu[1]])
    assert np.array_equal(m[iu], pairwise) and np.array_equal(m.T[iu], pairwise)


def test_reused_contexts_give_the_same_points(real_cache):
    """`reuse_contexts()` (dp figures) shares one read of the run between simulate calls, same numbers."""
    from dp.simulate.replay import sweep
    from dp.simulate.replay.sweep import SimSettings, reuse_contexts, simulate

    calls = [SimSettings(run="esc", policies=("deepprune", "deepprune-oracle"), judge="jaccard",
                         truncate="tokens:30", orders=6, limit=20, sweep=("tau=0.3,0.7",)),
             SimSettings(run="esc", policies=("cons", "esc", "random"), judge="jaccard", truncate="tokens:30",
                         orders=6, limit=20),
             SimSettings(run="esc", policies=("deepprune",), judge="jaccard", truncate="tokens:30", orders=6,
                         limit=20, params={"tau": 0.5}),
             SimSettings(run="esc", policies=("deepprune-oracle", "cons"), judge="jaccard", truncate="tokens:30",
                         orders=6, limit=20, params={"tau": 0.5})]
    with Cache(real_cache) as c:
        alone = [[r.summary() for r in simulate(c, s, store=False)] for s in calls]
        with reuse_contexts():
            shared, seen = [], []
            for s in calls:
                shared.append([r.summary() for r in simulate(c, s, store=False)])
                seen.append(id(next(iter(sweep._MEMO.values()))[0]))
        assert sweep._MEMO is None
    assert shared == alone
    assert len(set(seen)) == 1  # read once, served all four calls (the oracle's needs any prefixes)
