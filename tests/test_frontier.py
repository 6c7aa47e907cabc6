"""`dp frontier` statistics and `dp tune`'s cross-validated choice, against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp.errors import DPError
from dp.simulate.replay.pareto_stats import Point, budget_table, paired_diff, pareto_front
from dp.simulate.replay.tune import TuneSettings, choose, fold_of, read_settings, tune
from tests.conftest import invoke

IDS = [f"p{i}" for i in range(8)]


def point(family, acc, tok, policy=None, in_sample=False, params=None):
    acc, tok = np.asarray(acc, float), np.asarray(tok, float)
    full = np.full(len(IDS), 100.0)
    return Point(family=family, policy=policy or family, params=params or {"x": family}, judge=None,
                 tokens=float(tok.sum()), tokens_std=0.0, full_tokens=float(full.sum()), accuracy=float(acc.mean()),
                 accuracy_std=0.0, in_sample=in_sample, problem_ids=list(IDS), acc_pp=acc, tok_pp=tok, full_pp=full,
                 graded=np.ones(len(IDS), bool))


def test_front_budgets_and_paired_difference_by_hand():
    ones = np.ones(8)
    cons = point("cons", ones, 100 * ones)
    rnd = point("random", [1, 1, 1, 1, 0, 0, 0, 0], 20 * ones)  # share 0.2, accuracy 0.5
    good = point("short-m@k", [1, 1, 1, 1, 1, 1, 0, 1], 25 * ones)  # share 0.25, accuracy 0.875
    cheat = point("deepprune[x]", ones, 5 * ones, policy="deepprune", in_sample=True)  # in-sample: never chosen
    pts = [cons, rnd, good, cheat]
    assert [p.family for p in pareto_front(pts)] == ["random", "short-m@k", "cons"]
    table = {(r["family"], r["budget"]): r for r in budget_table(pts, [0.1, 0.25])}
    assert table[("deepprune[x]", 0.1)]["point"] is None
    row = table[("short-m@k", 0.25)]
    assert row["point"]["accuracy"] == 0.875 and row["point"]["token_share"] == 0.25
    # per problem: 0 0 0 0 1 1 0 1 -> mean 3/8, sd (ddof 1) = sqrt(15/56), se = sd / sqrt(8)
    assert row["vs_random"]["accuracy_diff"] == pytest.approx(3 / 8)
    assert row["vs_random"]["accuracy_diff_se"] == pytest.approx(np.sqrt(15 / 56) / np.sqrt(8))
    assert paired_diff(good, rnd)[0] == pytest.approx(0.375)
    assert row["point"]["accuracy_se"] == pytest.approx(np.sqrt(1 / 8) / np.sqrt(8))  # sd of 7 ones, 1 zero
    # random under a per-rule family name is still random: never paired with itself
    rnd8 = point("random[tokens:8]", ones, 20 * ones, policy="random")
    rows = budget_table([cons, rnd, rnd8], [0.25])
    assert all(r["vs_random"] is None for r in rows)


def test_tune_reports_on_problems_it_did_not_choose_on():
    folds = fold_of(IDS, 2, seed=0)
    a, b = folds == 0, folds == 1
    ones = np.ones(8)
    cons = point("cons", ones, 100 * ones)
    safe = point("esc", ones, 50 * ones)  # always right, half the tokens
    # right on fold 0's problems, wrong on fold 1's, and cheap
    lucky = point("short-m@k", np.where(a, 1.0, 0.0), 10 * ones)
    oracle = point("deepprune-oracle", ones, 1 * ones)  # a bound: never chosen
    pts = [cons, safe, lucky, oracle]
    s = TuneSettings(tolerance=0.01, folds=2, seed=0)
    # chosen on fold 0 alone, lucky looks perfect; on fold 1 it fails
    assert choose(pts, a, s) is lucky and choose(pts, b, s) is safe
    out = tune(pts, s)
    by = {f["fold"]: f for f in out["per_fold"]}
    # held-out fold 1 gets the choice made on fold 0 (lucky) and fold 0 the choice made on fold 1 (safe)
    assert by[1]["chosen"] == "short-m@k" and by[0]["chosen"] == "esc"
    na, nb = int(a.sum()), int(b.sum())
    assert out["held_out_token_share"] == pytest.approx((50 * na + 10 * nb) / 800)
    assert out["held_out_accuracy"] == pytest.approx(na / 8)  # lucky scores 0 on the fold it is reported on
    assert out["held_out_cons_accuracy"] == 1.0
    # chosen on all problems (what would be served): safe, whose in-sample numbers are an upper bound
    assert out["chosen"]["family"] == "esc" and out["chosen"]["in_sample_token_share"] == 0.5
    # with a budget of 20%: the most accurate point within it
    assert tune(pts, TuneSettings(budget=0.2, folds=2))["chosen"]["family"] == "short-m@k"
    with pytest.raises(DPError, match="no setting spends at most 5%"):
        tune(pts, TuneSettings(budget=0.05, folds=2))


def test_tune_errors_and_settings_file(tmp_path):
    with pytest.raises(DPError, match="folds"):
        fold_of(IDS, 9, 0)
    with pytest.raises(DPError, match="tolerance"):
        TuneSettings(tolerance=2)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(DPError, match="not a dp tune settings file"):
        read_settings(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"dp_settings": 1, "policy": "short-m@k", "params": {"m": 0}}))
    with pytest.raises(DPError, match="m must be"):
        read_settings(ok)
    for args in (["simulate", "--cache", tmp_path / "x.duckdb"], ["live", "--cache", tmp_path / "x.duckdb", "--run", "r"],
                 ["serve", "--port", "0"]):
        r = invoke(*args, "--settings", bad)  # refused before any cache, engine or port is touched
        assert r.exit_code != 0 and "not a dp tune settings file" in r.output, args
    assert not (tmp_path / "x.duckdb").exists()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from tests.test_figures import build_cache

    d = tmp_path_factory.mktemp("frontier")
    build_cache(d / "c.duckdb", problems=8, traces=10)
    return d


def test_frontier_cli_names_run_n_rule_and_judge_and_writes_figure(synth):
    from dp.figures.frontier import stored_frontier_figures

    out = synth / "out"
    args = ["frontier", "--cache", synth / "c.duckdb", "--run", "conf", "--run", "plain", "--judge", "jaccard",
            "--truncate", "words:4", "--orders", 3, "--seed", 2]
    r = invoke(*args, "--json", "--out", out)
    assert r.exit_code == 0, r.output
    runs = {x["run"]: x for x in json.loads(r.stdout)["runs"]}
    conf, plain = runs["conf"], runs["plain"]
    assert conf["n"] == 10 and conf["truncate"] == "words:4" and conf["judges"] == ["jaccard"]
    fams = {p["family"] for p in conf["points"]}
    assert {"cons", "random", "short-m@k", "deepprune[jaccard]", "deepprune-oracle", "deepprune-conf[jaccard]",
            "deepconf-low", "deepconf-high", "esc", "adaptive"} <= fams
    assert not any(p["family"].startswith(("deepconf", "deepprune-conf")) for p in plain["points"])
    assert any("no log-probs" in n for n in plain["notes"])
    for p in conf["points"]:
        assert (p["judge"] is not None) == p["policy"].startswith("deepprune"), p
        assert not p["in_sample"]
    front = conf["front"]
    shares, accs = [p["token_share"] for p in front], [p["accuracy"] for p in front]
    assert shares == sorted(shares) and all(b > a for a, b in zip(accs, accs[1:], strict=False))
    for p in front:  # no point is at least as cheap and more accurate than a point on the front
        assert not any(q["token_share"] <= p["token_share"] and q["accuracy"] > p["accuracy"] + 1e-12
                       for q in conf["points"])
    cons = next(p for p in conf["points"] if p["policy"] == "cons")
    assert cons["token_share"] == 1.0 and conf["cons_accuracy"] == cons["accuracy"]
    assert {(x["family"], x["budget"]) for x in conf["table"]} >= {("esc", 0.25), ("random", 0.75)}
    assert (out / "frontier_conf.png").read_bytes()[:4] == b"\x89PNG" and (out / "frontier_plain.json").is_file()
    md = (out / "frontier.md").read_text()
    assert "### Frontier of run `conf`" in md and "prefix rule words:4" in md and "judge jaccard" in md
    assert [f.name for f in stored_frontier_figures(out)] == ["frontier_conf", "frontier_plain"]
    text = invoke(*args)  # the text table
    assert text.exit_code == 0 and "run 'conf'" in text.output and "N = 10" in text.output
    assert "Pareto front" in text.output


def test_tune_writes_settings_that_simulate_replays(synth, tmp_path):
    f = tmp_path / "not-yet" / "tuned.json"  # its folder is made (`make demo`'s out/ in a fresh clone)
    r = invoke("tune", "--cache", synth / "c.duckdb", "--run", "conf", "--judge", "jaccard", "--truncate", "words:4",
               "--truncate", "tokens:3", "--family", "cons", "--family", "random", "--family", "deepprune",
               "--family", "short-m@k", "--orders", 3, "--folds", 2, "--tolerance", 0.05, "--out", f, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    doc = json.loads(f.read_text())
    assert doc["policy"] == out["policy"] and doc["truncate"] in ("words:4", "tokens:3") and len(out["per_fold"]) == 2
    assert doc["truncate"] == (out["chosen"]["truncate"] or "words:4")
    assert 0 <= out["held_out_token_share"] <= 1
    sim = invoke("simulate", "--cache", synth / "c.duckdb", "--run", "conf", "--settings", f, "--orders", 3,
                 "--seed", 0, "--no-store", "--json")
    assert sim.exit_code == 0, sim.output
    row = json.loads(sim.stdout)[0]
    assert row["policy"] == out["policy"]
    assert row["tokens"] == pytest.approx(out["chosen"]["tokens"])  # the same point, replayed again
    assert row["accuracy"] == pytest.approx(out["chosen"]["accuracy"])


def test_confidence_weighted_deepprune_on_a_run_without_logprobs_is_deepprune(synth):
    r = invoke("simulate", "--cache", synth / "c.duckdb", "--run", "plain", "--policy", "deepprune-conf",
               "--policy", "deepprune", "--judge", "jaccard", "--truncate", "words:4", "--K2", 3, "--orders", 4,
               "--no-store", "--json")
    assert r.exit_code == 0, r.output
    a, b = json.loads(r.stdout)
    assert (a["policy"], b["policy"]) == ("deepprune-conf", "deepprune")
    for key in ("tokens", "accuracy", "accuracy_std", "pass_rate", "judge_pairs"):
        assert a[key] == b[key], key
