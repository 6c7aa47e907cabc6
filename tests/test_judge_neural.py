"""The neural judges: focal loss by hand, pair fitting, settings; the real models (slow).

Slow tests load all-MiniLM-L6-v2 (cross-encoder) and SmolLM2-135M-Instruct (llm), both
offline, and train for a few steps on the small real Qwen cache of `judge_helpers`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from judge_helpers import qwen_cache

from dp.cache import Cache
from dp.cli import cli
from dp.errors import DPError
from dp.judge import Prefix, load_judge
from dp.judge.base import JUDGES
from dp.judge.cross_encoder import CrossEncoderSettings, fit_pair, train_cross_encoder
from dp.judge.losses import LoopSettings, batch_order, focal_loss, schedule, settings_from
from dp.judge.pairs import build_pairs
from dp.judge.train import TRAINERS, train_judge

torch = pytest.importorskip("torch")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory):
    return qwen_cache(tmp_path_factory.mktemp("neural") / "qwen.duckdb")


@pytest.fixture(scope="module")
def pairs(cache_path):
    with Cache(cache_path) as c:
        return build_pairs(c, "qwen", "tokens:30", oversample_negative=2)


# ------------------------------------------------------------------ fast


def test_focal_loss_with_gamma_0_is_binary_cross_entropy():
    z = torch.tensor([-3.0, -0.5, 0.0, 0.7, 4.0, 12.0])
    y = torch.tensor([1, 0, 1, 0, 1, 0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y.float())
    assert focal_loss(z, y).item() == pytest.approx(bce.item(), rel=1e-6)
    # alpha = 0.5 weighs both classes by one half
    assert focal_loss(z, y, alpha=0.5).item() == pytest.approx(bce.item() / 2, rel=1e-6)


def test_focal_loss_worked_numbers():
    z = torch.tensor([math.log(3.0)])  # p = 0.75
    # label 1: p_t = 0.75; (1 - 0.75)^2 * -ln 0.75 = 0.0625 * 0.2876821 = 0.0179801
    assert focal_loss(z, torch.tensor([1]), gamma=2.0).item() == pytest.approx(0.0179801, abs=1e-7)
    # label 0: p_t = 0.25, alpha_t = 1 - 0.25; 0.75 * 0.75^2 * ln 4 = 0.5848428
    assert focal_loss(z, torch.tensor([0]), alpha=0.25, gamma=2.0).item() == pytest.approx(0.5848428, abs=1e-6)
    # z = 0, label 1, alpha 0.25, gamma 2: 0.25 * 0.5^2 * ln 2 = 0.0433217
    assert focal_loss(torch.tensor([0.0]), torch.tensor([1]), alpha=0.25, gamma=2.0).item() == pytest.approx(
        0.0433217, abs=1e-7)
    # batch = mean of the items; extreme logits stay finite
    both = focal_loss(torch.tensor([math.log(3.0), math.log(3.0)]), torch.tensor([1, 0]), gamma=2.0)
    assert both.item() == pytest.approx((0.0179801 + 0.5625 * math.log(4.0)) / 2, abs=1e-6)
    assert math.isfinite(focal_loss(torch.tensor([-200.0]), torch.tensor([1]), gamma=2.0).item())


def test_focal_loss_rejects_bad_parameters():
    with pytest.raises(DPError, match="gamma"):
        focal_loss(torch.zeros(1), torch.ones(1), gamma=-1.0)
    with pytest.raises(DPError, match="alpha"):
        focal_loss(torch.zeros(1), torch.ones(1), alpha=1.5)


def test_fit_pair_cuts_the_longer_side_first_and_keeps_the_chosen_end():
    a, b = list(range(10)), [100, 101, 102]
    assert fit_pair(a, b, 8, "end") == ([5, 6, 7, 8, 9], [100, 101, 102])
    assert fit_pair(a, b, 8, "start") == ([0, 1, 2, 3, 4], [100, 101, 102])
    assert fit_pair(a, a, 7, "end") == ([6, 7, 8, 9], [7, 8, 9])  # both long: split the budget
    assert fit_pair(a[:2], b, 8, "end") == (a[:2], b)  # fits: untouched


def test_schedule_and_batches():
    assert [round(schedule(k, 10, 0.2), 3) for k in range(10)] == [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5,
                                                                    0.375, 0.25, 0.125]
    batches = batch_order(5, 4, 3, seed=0, what="t")
    assert [len(b) for b in batches] == [3, 3, 3, 3]
    flat = np.concatenate(batches)
    assert sorted(flat[:5].tolist()) == list(range(5))  # first epoch: each row once
    assert np.array_equal(flat, np.concatenate(batch_order(5, 4, 3, seed=0, what="t")))


def test_settings_are_validated_in_one_line():
    with pytest.raises(DPError, match="keep must be 'end' or 'start'"):
        CrossEncoderSettings(keep="middle")
    with pytest.raises(DPError, match="steps must be an integer >= 1"):
        LoopSettings(steps=0)
    with pytest.raises(DPError, match=r"unknown setting\(s\) stepz"):
        settings_from(CrossEncoderSettings, {"stepz": 3})


def test_registered():
    assert {"cross-encoder", "llm"} <= set(JUDGES) and {"cross-encoder", "llm"} <= set(TRAINERS)


def test_trainers_without_settings_refuse_them(cache_path, tmp_path):
    with pytest.raises(DPError, match="takes no training settings"):
        train_judge(cache_path, ["qwen"], "features", "tokens:30", tmp_path / "f", settings={"steps": 3})


def test_cross_encoder_has_no_untrained_default():
    with pytest.raises(DPError, match="no untrained default"):
        load_judge("cross-encoder")


# ------------------------------------------------------------------ slow: cross-encoder


@pytest.fixture(scope="module")
def trained_dir(pairs, tmp_path_factory):
    """A cross-encoder trained 30 steps on 200 pairs, saved; plus its in-memory scores."""
    out = tmp_path_factory.mktemp("ce") / "judge"
    s = CrossEncoderSettings(steps=30, batch_size=4, max_train_pairs=200, max_length=128)
    judge = train_cross_encoder(pairs.left, pairs.right, pairs.labels, s, seed=0, out=out)
    return out, judge, judge.score(pairs.left[:40], pairs.right[:40])


@pytest.mark.slow
def test_cross_encoder_saves_and_reloads_with_the_same_scores(trained_dir, pairs):
    out, judge, scores = trained_dir
    spec = json.loads((out / "judge.json").read_text())
    assert spec["type"] == "cross-encoder" and spec["seed"] == 0 and spec["settings"]["steps"] == 30
    assert spec["training"]["train_pairs"] == 200 and (out / "model.safetensors").is_file()
    again = load_judge(out)
    assert again.name == judge.name and again.name.startswith("cross-encoder:")
    np.testing.assert_allclose(again.score(pairs.left[:40], pairs.right[:40]), scores, atol=1e-6)
    assert np.all((scores >= 0) & (scores <= 1)) and scores.std() > 0
    swapped = again.score(pairs.right[:40], pairs.left[:40])
    np.testing.assert_allclose(swapped, scores, atol=1e-6)  # both orders averaged
    assert again.last_prompt_tokens.shape == (40,) and again.cost()["pairs"] == 80


@pytest.mark.slow
def test_eval_a_trained_directory_through_the_cli(trained_dir, cache_path):
    out, _, _ = trained_dir
    args = ("judge", "eval", "--cache", cache_path, "--run", "qwen", "--judge", out, "--truncate", "tokens:30",
            "--max-pairs", "5", "--json")
    first = json.loads(ok(*args).stdout)
    assert first["judge"].startswith("cross-encoder:") and 0 <= first["auroc"] <= 1 and first["pairs"] == 60
    assert first["scores_computed"] == 60
    again = json.loads(ok(*args).stdout)
    assert again["auroc"] == first["auroc"] and again["scores_cached"] == 60


@pytest.mark.slow
def test_train_cross_encoder_through_the_cli(cache_path, tmp_path):
    out = tmp_path / "ce"
    res = json.loads(ok("judge", "train", "--cache", cache_path, "--run", "qwen", "--judge", "cross-encoder",
                        "--truncate", "tokens:30", "--max-pairs", "3", "--steps", "2", "--set", "batch_size=4",
                        "--set", "focal_gamma=2", "--out", out, "--seed", "1", "--json").stdout)
    assert res["type"] == "cross-encoder" and 0 <= res["train_auroc"] <= 1
    spec = json.loads((out / "judge.json").read_text())
    assert spec["settings"]["focal_gamma"] == 2 and spec["settings"]["steps"] == 2
    assert spec["trained_on"]["runs"] == ["qwen"] and "train_metrics" in spec
    bad = run("judge", "train", "--cache", cache_path, "--run", "qwen", "--judge", "cross-encoder",
              "--set", "nope=1", "--out", tmp_path / "x")
    assert bad.exit_code != 0 and "unknown setting(s) nope" in bad.output


# ------------------------------------------------------------------ slow: llm


@pytest.fixture(scope="module")
def llm():
    return load_judge("llm")


def _prefixes():
    texts = ["We need 3 + 4. Adding gives 7, so the answer is", "3 + 4: count up from 3: 4, 5, 6, 7. So",
             "Adding 3 and 4 we get 8. Therefore", "The question asks for 3 + 4. Hmm, wait"]
    return [Prefix(i + 1, t, len(t.split())) for i, t in enumerate(texts)]


@pytest.mark.slow
def test_llm_zero_shot_scores_are_probabilities_symmetric_and_deterministic(llm):
    p = _prefixes()
    left, right = [p[0], p[0], p[1], p[2], p[3]], [p[1], p[2], p[2], p[3], p[0]]
    s = llm.score(left, right)
    assert s.shape == (5,) and np.all((s > 0) & (s < 1))
    np.testing.assert_allclose(llm.score(right, left), s, atol=1e-5)
    np.testing.assert_array_equal(llm.score(left, right), s)
    assert llm.name.startswith("llm:smollm2-135m:") and llm.cacheable
    assert llm.last_prompt_tokens.shape == (5,) and llm.last_prompt_tokens.min() > 50
    assert llm.cost()["prompt_tokens"] >= 3 * int(llm.last_prompt_tokens.sum())


@pytest.mark.slow
def test_llm_score_is_the_yes_no_ratio_of_the_next_token(llm):
    a, b = _prefixes()[:2]
    ids = llm.prompt_ids(a.text, b.text)
    with torch.inference_mode():
        z = llm.logits([ids, ids[:-3]])[0].item()  # padded next to a shorter prompt
        probs = torch.softmax(llm.model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    yes, no = probs[llm.label_ids[1]].sum().item(), probs[llm.label_ids[0]].sum().item()
    assert 1 / (1 + math.exp(-z)) == pytest.approx(yes / (yes + no), abs=1e-4)


@pytest.mark.slow
def test_llm_trains_saves_and_reloads(cache_path, tmp_path):
    out = tmp_path / "llm"
    res = json.loads(ok("judge", "train", "--cache", cache_path, "--run", "qwen", "--judge", "llm",
                        "--truncate", "tokens:20", "--max-pairs", "1", "--steps", "2", "--set", "batch_size=2",
                        "--set", "max_trace_tokens=32", "--out", out, "--json").stdout)
    assert res["type"] == "llm" and res["judge"].startswith("llm:ft-smollm2-135m:")
    spec = json.loads((out / "judge.json").read_text())
    assert spec["weights"] == "." and spec["training"]["pairs_seen"] == 4
    judge = load_judge(out)
    assert judge.name == res["judge"]
    p = _prefixes()
    s = judge.score(p[:2], p[2:])
    assert np.all((s > 0) & (s < 1))
