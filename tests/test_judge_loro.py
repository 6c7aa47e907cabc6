"""`dp judge loro`: leave-one-run-out judge tables and their ROC figures, on real Qwen traces.

Two runs hold disjoint problems of the shared Qwen file, so a judge trained on one never
saw the other. The judges are cheap (oracle, random, jaccard, a features judge per fold).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from judge_helpers import QWEN, make_cache, real_problems

from dp.cli import cli
from dp.errors import DPError
from dp.figures.loro import LORO_FILE, stored_loro_figures
from dp.judge.loro import parse_groups, parse_judges


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    if not QWEN.is_file():
        pytest.skip("../shared/data is not present")
    path = tmp_path_factory.mktemp("loro") / "c.duckdb"
    problems = real_problems(QWEN, 12, 4)
    ids = sorted(problems)
    make_cache(path, "a", {p: problems[p] for p in ids[0::2]})
    make_cache(path, "b", {p: problems[p] for p in ids[1::2]})
    return path


@pytest.fixture(scope="module")
def folds(cache_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    for held, train in (("a", "b"), ("b", "a")):
        r = run("judge", "train", "--cache", cache_path, "--run", train, "--judge", "features",
                "--truncate", "tokens:30", "--out", root / held / "features")
        assert r.exit_code == 0, r.output
    return root


def test_group_and_judge_specs():
    assert parse_groups(["x=r1,r2", "y"]) == {"x": ["r1", "r2"], "y": ["y"]}
    assert parse_judges(["jaccard", "ft=dir/{heldout}/llm"]) == [("jaccard", "jaccard"), ("ft", "dir/{heldout}/llm")]
    for bad, match in ((["x"], "at least two groups"), (["x=r", "y=r"], "two groups"), (["x", "x"], "twice")):
        with pytest.raises(DPError, match=match):
            parse_groups(bad)


def test_loro_table_and_one_roc_figure_per_held_out_run(cache_path, folds, tmp_path):
    out = tmp_path / "figs"
    r = run("judge", "loro", "--cache", cache_path, "--group", "a", "--group", "b", "--truncate", "tokens:20",
            "--truncate", "b=tokens:40", "--judge", "oracle", "--judge", "random", "--judge", "jaccard",
            "--judge", f"features={folds}/{{heldout}}/features", "--max-pairs", "60", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    keys = {(x["heldout"], x["truncate"], x["judge"]) for x in res["rows"]}
    assert keys == {(h, t, j) for h, t in (("a", "tokens:20"), ("b", "tokens:40"))
                    for j in ("oracle", "random", "jaccard", "features")}
    by = {(x["heldout"], x["judge"]): x for x in res["rows"]}
    assert by["a", "oracle"]["auroc"] == 1.0 and by["b", "oracle"]["tnr_at_fnr_0_2"] == 1.0
    assert all(0 < x["auroc"] < 1 for x in res["rows"] if x["judge"] != "oracle")
    assert by["a", "features"]["judge_key"] != by["b", "features"]["judge_key"]  # one judge per fold
    assert all(x["seconds_per_1000_pairs"] > 0 for x in res["rows"] if x["scores_computed"])
    assert {p.name for p in out.iterdir()} >= {LORO_FILE, "roc_loro_a.png", "roc_loro_b.pdf"}
    figs = stored_loro_figures(out)  # what `dp figures --out` there adds to its report
    assert [f.name for f in figs] == ["roc_loro_a", "roc_loro_b"] and len(figs[0].rows) == 4


def test_loro_refuses_a_judge_that_saw_the_held_out_run(cache_path, folds, tmp_path):
    r = run("judge", "loro", "--cache", cache_path, "--group", "a", "--group", "b", "--truncate", "tokens:20",
            "--judge", f"{folds}/a/features", "--out", tmp_path / "o")  # trained on b: in-sample for b
    assert r.exit_code != 0 and "trained on problems of the held-out run 'b'" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "o").exists()
    r = run("judge", "loro", "--cache", cache_path, "--group", "a", "--group", "b", "--truncate", "tokens:20",
            "--judge", f"{tmp_path}/{{heldout}}/none", "--out", tmp_path / "o")
    assert r.exit_code != 0 and "no trained judge at" in r.output
    r = run("judge", "loro", "--cache", cache_path, "--group", "a", "--group", "b", "--truncate", "tokens:20",
            "--judge", f"{tmp_path}/{{heldout}}/none", "--judge", "jaccard", "--skip-missing", "--out", tmp_path / "o",
            "--json")
    assert r.exit_code == 0 and {x["judge"] for x in json.loads(r.stdout)["rows"]} == {"jaccard"}
    assert "left out there" in r.stderr
