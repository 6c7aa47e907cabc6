"""`dp judge pairs|train|eval` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from judge_helpers import make_cache, qwen_cache

from dp.cli import cli


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return str(qwen_cache(tmp_path_factory.mktemp("cli") / "qwen.duckdb"))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def failed(result, message: str) -> None:
    """The command failed with exactly one line `error: ...` containing `message`."""
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_help():
    for sub in ([], ["pairs"], ["train"], ["eval"]):
        assert "Usage" in ok("judge", *sub, "--help").output


def test_pairs_json_and_jsonl(cache_path, tmp_path):
    out = tmp_path / "pairs.jsonl"
    res = json.loads(ok("judge", "pairs", "--cache", cache_path, "--run", "qwen", "--truncate", "tokens:60",
                        "--out", out, "--json").stdout)
    assert res["pairs"] == 336 and 0 < res["positive_rate"] < 1 and res["problems"] == 12
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 336 and {"trace_a", "trace_b", "label", "prefix_a", "prefix_b"} <= rows[0].keys()
    assert "positive_rate" in ok("judge", "pairs", "--cache", cache_path, "--run", "qwen").output


def test_eval_oracle_json_keys(cache_path):
    res = json.loads(ok("judge", "eval", "--cache", cache_path, "--run", "qwen", "--judge", "oracle",
                        "--truncate", "tokens:60", "--json").stdout)
    assert {"auroc", "tnr_at_fnr_0_2", "pairs", "positive_rate", "judge", "run", "truncate", "seed"} <= res.keys()
    assert res["auroc"] == 1.0 and res["tnr_at_fnr_0_2"] == 1.0 and res["pairs"] == 336


def test_train_then_eval_uses_the_score_cache(cache_path, tmp_path):
    out = tmp_path / "judge"
    res = json.loads(ok("judge", "train", "--cache", cache_path, "--run", "qwen", "--judge", "features",
                        "--truncate", "tokens:60", "--out", out, "--json").stdout)
    assert res["pairs"] > 336 and res["train_auroc"] > 0.6  # label-0 pairs doubled
    spec = json.loads((out / "judge.json").read_text())
    assert spec["trained_on"]["runs"] == ["qwen"] and spec["trained_on"]["seed"] == 0
    assert spec["train_metrics"]["auroc"] == pytest.approx(res["train_auroc"])
    args = ["judge", "eval", "--cache", cache_path, "--run", "qwen", "--judge", out, "--truncate", "tokens:60", "--json"]
    first = json.loads(ok(*args).stdout)
    second = json.loads(ok(*args).stdout)
    assert first["scores_computed"] == 336 and second["scores_computed"] == 0 and second["scores_cached"] == 336
    assert first["auroc"] == second["auroc"] == pytest.approx(res["train_auroc"])


@pytest.mark.parametrize("args, message", [
    (["--judge", "nope"], "unknown judge 'nope'"),
    (["--judge", "oracle", "--truncate", "tokens:x"], "bad truncation rule 'tokens:x'"),
    (["--judge", "oracle", "--run", "nope"], "no run 'nope'"),
])
def test_eval_bad_input_is_one_line(cache_path, args, message):
    base = ["judge", "eval", "--cache", cache_path, "--run", "qwen"]
    failed(run(*base, *args), message)


def test_run_without_both_labels(tmp_path):
    path = make_cache(tmp_path / "same.duckdb", "r", {"a": ["The answer is 1."] * 3})
    failed(run("judge", "eval", "--cache", path, "--run", "r", "--judge", "oracle"), "no pairs of both labels")
    failed(run("judge", "train", "--cache", path, "--run", "r", "--out", tmp_path / "j"), "no pairs of both labels")


def test_missing_cache_is_not_created(tmp_path):
    failed(run("judge", "eval", "--cache", tmp_path / "none.duckdb", "--run", "r", "--judge", "oracle"), "no cache at")
    assert not (tmp_path / "none.duckdb").exists()
