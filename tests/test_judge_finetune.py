"""The llm judge's resumable fine-tune and the lm-embed judge, on the real SmolLM2-135M.

The resume test trains 4 steps of the top decoder layer on tiny prompts (the real model,
the real Qwen traces of `judge_helpers`), once straight through and once stopped by
`--time-limit 0` after its first checkpoint and resumed: the final weights and the
validation history must be the same.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from judge_helpers import qwen_cache

from dp.cache import Cache
from dp.cli import cli
from dp.errors import DPError
from dp.judge import Prefix, load_judge
from dp.judge.finetune import FinetuneSettings, split_problems
from dp.judge.llm_train import LLMTrainSettings
from dp.judge.pairs import build_pairs
from dp.judge.train import run_rules

torch = pytest.importorskip("torch")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return qwen_cache(tmp_path_factory.mktemp("finetune") / "qwen.duckdb")


# ------------------------------------------------------------------ settings and splits


def test_validation_split_is_by_problem_and_seeded():
    problems = np.array([f"r/p{i % 10}" for i in range(200)], dtype=object)
    val = split_problems(problems, 0.3, seed=1)
    held = set(problems[val])
    assert len(held) == 3 and not held & set(problems[~val])  # whole problems, never split
    np.testing.assert_array_equal(val, split_problems(problems, 0.3, seed=1))
    with pytest.raises(DPError, match="no validation or no training"):
        split_problems(problems, 0.01, seed=1)


def test_validation_split_is_by_question_across_runs(tmp_path):
    # the same 12 questions in two runs, under other problem ids in the second: split by
    # "run/problem_id", each question landed in both halves with probability about 1/2
    from dp.judge.llm_train import validation_pairs
    from dp.judge.pairs import PairSet
    from tests.conftest import invoke

    cache = tmp_path / "two.duckdb"
    for run, prefix in (("a", "p"), ("b", "other-")):
        rows = [{"pid": f"{prefix}{i}", "q": f"What is {i} + {i}?", "g": str(2 * i),
                 "t": f"so the answer is \\boxed{{{2 * i + k % 2}}}"} for i in range(12) for k in range(3)]
        f = tmp_path / f"{run}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        r = invoke("import", f, "--format", "table", "--run", run, "--cache", cache,
                   "--map", "problem_id=pid,question=q,text=t,gold=g")
        assert r.exit_code == 0, r.output
    with Cache(cache) as c:
        pairs = PairSet.concat([build_pairs(c, run, "tokens:4") for run in ("a", "b")])
    assert len(set(pairs.problems)) == 24 and len(set(pairs.question_keys())) == 12
    for seed in range(5):
        val = validation_pairs(pairs, 0.25, seed)
        held = set(pairs.question_keys()[val])
        assert len(held) == 3 and not held & set(pairs.question_keys()[~val])
        assert {p.split("/")[0] for p in pairs.problems[val]} == {"a", "b"}  # both runs' copies held out
    sub = pairs.subset(np.arange(pairs.n) % 2 == 0)
    assert sub.questions is not None and sub.questions.size == sub.n


def test_llm_judge_trains_on_focal_loss_by_default():
    assert LLMTrainSettings().focal_gamma == 2.0  # the recipe the help and README name
    assert FinetuneSettings().focal_gamma == 0.0  # the loop's own default stays cross-entropy


def test_finetune_settings_are_validated_in_one_line():
    with pytest.raises(DPError, match="eval_every needs val_share"):
        FinetuneSettings(eval_every=5)
    with pytest.raises(DPError, match="grad_accum must be an integer >= 1"):
        LLMTrainSettings(grad_accum=0)
    with pytest.raises(DPError, match="train_layers"):
        LLMTrainSettings(train_layers=0)
    s = LLMTrainSettings()
    assert (s.batch_size, s.lr) == (8, 2e-5)  # the llm judge's defaults, not the loop's
    assert "train_layers" not in json.dumps(s.judge_settings().__dict__)


def test_truncate_run_equals_rule_applies_to_that_run_only():
    got = [(run_, str(r)) for run_, r in run_rules(["tokens:8", "b=tokens:30", "b=tokens:15"], ["a", "b"])]
    assert got == [("a", "tokens:8"), ("b", "tokens:30"), ("b", "tokens:15")]
    with pytest.raises(DPError, match="not among the runs"):
        run_rules(["c=tokens:3"], ["a"])
    with pytest.raises(DPError, match="no truncation rule for run"):
        run_rules(["a=tokens:3"], ["a", "b"])


# ------------------------------------------------------------------ llm: resume


TRAIN = ("judge", "train", "--run", "qwen", "--judge", "llm", "--truncate", "tokens:6", "--max-pairs", "6",
         "--steps", "4", "--set", "batch_size=2", "--set", "max_trace_tokens=6", "--set", "train_layers=1",
         "--set", "lr=1e-3", "--set", "warmup=0", "--set", "val_share=0.25", "--set", "eval_every=2",
         "--set", "val_pairs=6", "--set", "checkpoint_every=2", "--set", "max_metric_pairs=4",
         "--set", "symmetric=false", "--json")


def _top_layer(path):
    judge = load_judge(path)
    return {n: p.detach().clone() for n, p in judge.model.named_parameters() if ".layers.29." in n}, judge


@pytest.mark.slow
def test_llm_training_resumed_after_a_time_limit_ends_where_an_uninterrupted_run_ends(cache_path, tmp_path):
    straight = tmp_path / "straight"
    r = run(*TRAIN, "--cache", cache_path, "--out", straight)
    assert r.exit_code == 0, r.output
    full = json.loads(r.stdout)
    assert full["complete"] and full["step"] == 4 and [h[0] for h in full["history"]] == [0, 2, 4]
    assert not (straight / "checkpoint").exists()

    parts = tmp_path / "parts"
    first = json.loads(run(*TRAIN, "--cache", cache_path, "--out", parts, "--time-limit", "0").stdout)
    assert first["complete"] is False and first["step"] == 2
    assert (parts / "checkpoint" / "state.pt").exists() and not (parts / "judge.json").exists()
    again = run(*TRAIN, "--cache", cache_path, "--out", parts)  # without --resume: refused, one line
    assert again.exit_code != 0 and "--resume" in again.output and "Traceback" not in again.output
    other = run(*TRAIN, "--cache", cache_path, "--out", parts, "--resume", "--set", "lr=2e-3")
    assert other.exit_code != 0 and "other settings" in other.output
    done = json.loads(run(*TRAIN, "--cache", cache_path, "--out", parts, "--resume").stdout)
    assert done["complete"] and done["history"] == full["history"]
    assert done["best_step"] == full["best_step"]

    a, ja = _top_layer(straight)
    b, jb = _top_layer(parts)
    assert a.keys() == b.keys() and a
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=0)
    with Cache(cache_path) as c:
        pairs = build_pairs(c, "qwen", "tokens:6", 3, 0)
    np.testing.assert_array_equal(ja.score(pairs.left, pairs.right), jb.score(pairs.left, pairs.right))


# ------------------------------------------------------------------ lm-embed


@pytest.fixture(scope="module")
def embed_trained(cache_path, tmp_path_factory):
    """(directory, the judge as trained, in memory): what `dp judge train --judge lm-embed` runs."""
    from dp.judge.lm_embed import trainer
    from dp.judge.train import training_meta

    out = tmp_path_factory.mktemp("lmembed") / "j"
    with Cache(cache_path) as c:
        pairs = build_pairs(c, "qwen", "tokens:20", 10, 0, 2)
        meta = training_meta(c, {"qwen": None}, ["tokens:20"], 0, 2, 10, pairs)
    return out, trainer(pairs, out, 0, meta, max_trace_tokens=24)


@pytest.fixture(scope="module")
def embed_dir(embed_trained):
    return embed_trained[0]


@pytest.mark.slow
def test_lm_embed_runs_one_forward_pass_per_distinct_prefix(embed_dir):
    judge = load_judge(embed_dir)
    texts = ["We add 3 and 4 to get 7", "Count up from 3: 4, 5, 6, 7", "3 + 4 = 8, so", "First, 3 + 4"]
    p = [Prefix(i + 1, t, len(t.split())) for i, t in enumerate(texts)]
    left = [p[0], p[0], p[1], p[2], p[3], p[1], p[0]]
    right = [p[1], p[2], p[2], p[3], p[0], p[3], p[3]]
    s = judge.score(left, right)
    assert judge.texts_embedded == 4  # 7 pairs, 4 distinct prefixes: 4 forward passes
    assert s.shape == (7,) and np.all((s > 0) & (s < 1))
    np.testing.assert_allclose(judge.score(right, left), s, rtol=1e-12)  # symmetric features
    assert judge.texts_embedded == 4  # nothing embedded twice
    alone = load_judge(embed_dir).embed([texts[2]])[0]  # batching and padding do not change an embedding
    np.testing.assert_allclose(judge.embed([texts[2]])[0], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lm_embed_saves_and_reloads_with_the_same_scores(embed_trained, cache_path):
    embed_dir, trained = embed_trained
    spec = json.loads((embed_dir / "judge.json").read_text())
    assert spec["type"] == "lm-embed" and spec["training"]["prefixes_embedded"] > 0
    with Cache(cache_path) as c:
        pairs = build_pairs(c, "qwen", "tokens:20", 4, 1)
    again = load_judge(embed_dir)  # against the judge as trained, not against a second load
    want = trained.score(pairs.left, pairs.right)
    assert want.std() > 0  # scores that could differ
    np.testing.assert_allclose(again.score(pairs.left, pairs.right), want, rtol=1e-9, atol=1e-12)
    assert again.name == trained.name == spec["name"] and again.name.startswith("lm-embed:smollm2-135m:")
    with pytest.raises(DPError, match="no untrained default"):
        load_judge("lm-embed")
