"""`dp import` of the two real trace files and `dp cache info` against independent counts."""

from __future__ import annotations

import json
import re
from itertools import combinations

import pytest

from tests.conftest import invoke


def _raw(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _info(cache, run):
    r = invoke("cache", "info", "--cache", cache, "--run", run, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads(r.stdout)["runs"]
    return row


def test_esc_counts_match_raw_file(real_cache, data_dir):
    rows = _raw(data_dir / "traces" / "esc_gpt35_last_letters_T0.7.jsonl")
    info = _info(real_cache, "esc")
    assert info["problems"] == len(rows) == 500
    assert info["traces"] == sum(len(r["generated_answer"]) for r in rows) == 20000
    # independent grading: the text after the last "The answer is", compared case-insensitively
    def answer(t):
        m = re.findall(r"answer is\s*(.*?)\.?\s*$", t, flags=re.I | re.S)
        return m[-1].strip().strip('"\'').lower() if m else None
    answers = [[answer(t) for t in r["generated_answer"]] for r in rows]
    correct = sum(a == r["answer"].lower() for r, ans in zip(rows, answers) for a in ans)
    assert info["trace_accuracy"] == pytest.approx(correct / 20000, abs=0.002)
    same = sum(a is not None and a == b for ans in answers for a, b in combinations(ans, 2))
    total = 500 * 40 * 39 // 2
    assert info["same_answer_pair_rate"] == pytest.approx(same / total, abs=0.002)
    assert info["has_logprobs"] is False


def test_qwen_counts_match_raw_file(real_cache, data_dir):
    rows = _raw(data_dir / "traces" / "qwen25math_math_cot_100.jsonl")
    info = _info(real_cache, "qwen")
    assert info["problems"] == 100 and info["traces"] == 800
    # the file's own grading (score) agrees on all but at most one trace ("10{,}000" vs "10000")
    assert abs(info["trace_accuracy"] - sum(sum(r["score"]) for r in rows) / 800) <= 1 / 800 + 1e-9
    same = sum(a == b for r in rows for a, b in combinations(r["pred"], 2))
    assert info["same_answer_pair_rate"] >= same / (100 * 28) - 1e-9  # equivalence only merges strings
    assert info["same_answer_pair_rate"] == pytest.approx(same / 2800, abs=0.02)
    assert 0.9 <= info["majority_accuracy"] <= 1.0


def test_import_refuses_existing_run_and_leaves_cache_unchanged(real_cache, data_dir):
    before = _info(real_cache, "qwen")
    r = invoke("import", data_dir / "traces" / "qwen25math_math_cot_100.jsonl", "--format", "qwen-math",
               "--run", "qwen", "--cache", real_cache)
    assert r.exit_code != 0 and "already exists" in r.output
    assert _info(real_cache, "qwen") == before


def test_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = {"problem_id": "a", "question": "q", "gold": "1", "traces": ["x \\boxed{1}"]}
    bad.write_text(json.dumps(good) + "\n{not json\n")
    cache = tmp_path / "c.duckdb"
    r = invoke("import", bad, "--run", "g", "--cache", cache)
    assert r.exit_code != 0
    assert f"{bad}:2" in r.output
    assert not cache.exists()  # nothing was written


def test_generic_with_given_answers(tmp_path):
    f = tmp_path / "g.jsonl"
    rows = [{"problem_id": "p1", "question": "q", "gold": "1/2", "model": "mine",
             "traces": ["so \\boxed{0.5}", "hmm", "it is 3"], "answers": ["\\frac12", None, "3"]}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cache = tmp_path / "c.duckdb"
    r = invoke("import", f, "--run", "g", "--cache", cache, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["traces"] == 3 and out["model"] == "mine"
    assert out["trace_accuracy"] == pytest.approx(1 / 3)


def test_bad_inputs_are_one_line_errors(tmp_path):
    r = invoke("import", tmp_path / "absent.jsonl", "--run", "x", "--cache", tmp_path / "c.duckdb")
    assert r.exit_code != 0 and "no such file" in r.output
    r = invoke("import", tmp_path / "absent.jsonl", "--run", "x", "--format", "nope")
    assert r.exit_code != 0
    r = invoke("cache", "info", "--cache", tmp_path / "absent.duckdb")
    assert r.exit_code != 0 and "no cache" in r.output
