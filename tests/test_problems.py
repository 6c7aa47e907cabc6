"""Problem loaders against the shared files, a GPQA CSV written here, bad input, the arith set."""

import csv
import json

import pytest

from dp.errors import DPError
from dp.problems import DATASETS, embedded_problems, load_dataset, load_file, shared_data_dir
from dp.types import AnswerKind


@pytest.fixture(scope="module")
def problems_dir():
    base = shared_data_dir()
    if base is None or not (base / "problems").is_dir():
        pytest.skip("shared data directory not found (set DP_DATA)")
    return base / "problems"


def _rows(path):
    return [json.loads(line) for line in path.open() if line.strip()]


@pytest.mark.parametrize(
    "name,count,kind",
    [("aime24", 30, AnswerKind.NUMBER), ("aime25", 30, AnswerKind.NUMBER),
     ("aime22-24", 90, AnswerKind.NUMBER), ("math500", 500, AnswerKind.EXPRESSION),
     ("gsm8k", 1319, AnswerKind.NUMBER)],
)
def test_shared_dataset_row_counts(problems_dir, name, count, kind):
    problems = load_dataset(name)
    assert len(problems) == count
    assert all(p.dataset == name and p.kind == kind and p.gold for p in problems)
    assert len({p.problem_id for p in problems}) == count


def test_aime_years_come_from_url(problems_dir):
    rows = _rows(problems_dir / "aime_2022_2024.jsonl")
    expected = [r["answer"] for r in rows if "2024_AIME" in r["url"]]
    problems = load_dataset("aime24")
    assert [p.gold for p in problems] == expected
    assert problems[0].problem_id == "2024-I-1"
    assert problems[0].question == rows[60]["question"]
    assert len(load_dataset("aime22")) == len(load_dataset("aime23")) == 30


def test_gold_answers_match_direct_read(problems_dir):
    rows = _rows(problems_dir / "math500.jsonl")
    problems = load_dataset("math500")
    for i in (0, 7, 499):
        assert problems[i].gold == rows[i]["answer"]
        assert problems[i].problem_id == rows[i]["unique_id"]
    rows = _rows(problems_dir / "aime_2025_II.jsonl")
    problems = load_dataset("aime25")
    assert problems[15].gold == rows[0]["answer"] and problems[15].problem_id == rows[0]["id"]


def test_gsm8k_gold_is_after_hashes(problems_dir):
    rows = _rows(problems_dir / "gsm8k_test.jsonl")
    problems = load_dataset("gsm8k", limit=3)
    assert len(problems) == 3
    assert problems[0].gold == "18" and problems[0].problem_id == "1"  # id = line number
    for p, row in zip(problems, rows[:3], strict=True):
        assert p.gold == row["answer"].split("####")[-1].strip()
        assert "####" not in p.gold and p.question == row["question"]


def _write_gpqa(path):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Record ID", "Question", "Correct Answer", "Incorrect Answer 1",
                    "Incorrect Answer 2", "Incorrect Answer 3"])
        for i in range(6):
            w.writerow([f"rec{i}", f"Question {i}, with a comma?", f"right {i}", f"wrong {i}a",
                        f"wrong {i}b", f"wrong {i}c"])


def test_gpqa_csv_letters_and_gold(tmp_path):
    path = tmp_path / "gpqa_diamond.csv"
    _write_gpqa(path)
    problems = load_file(path, seed=3)
    assert len(problems) == 6
    golds = set()
    for i, p in enumerate(problems):
        assert p.kind == AnswerKind.CHOICE and p.problem_id == f"rec{i}"
        assert sorted(p.choices) == sorted([f"right {i}", f"wrong {i}a", f"wrong {i}b",
                                            f"wrong {i}c"])
        assert p.choices["ABCD".index(p.gold)] == f"right {i}"
        assert f"({p.gold}) right {i}" in p.question
        assert p.question.startswith(f"Question {i}, with a comma?\n\n(A) ")
        golds.add(p.gold)
    assert len(golds) > 1  # shuffled, not always in the same place
    assert load_file(path, seed=3) == problems
    assert load_file(path, seed=4) != problems
    assert len(load_file(path, limit=2)) == 2


def test_gpqa_csv_missing_columns(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Question,Answer\nq,a\n")
    with pytest.raises(DPError, match="missing columns"):
        load_file(path)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n\n{"id": "b", "quest\n')
    with pytest.raises(DPError, match=r"mine\.jsonl:3"):
        load_file(path)


def test_generic_jsonl_and_missing_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n'
                    '{"question": "2+2?", "answer": " 4 "}\n')
    problems = load_file(path)
    assert [(p.dataset, p.problem_id, p.gold, p.kind) for p in problems] == [
        ("mine", "a", "2", AnswerKind.EXPRESSION), ("mine", "1", "4", AnswerKind.EXPRESSION)]
    path.write_text('{"id": "a", "question": "1+1?", "answer": "2"}\n{"id": "b", "question": "x"}\n')
    with pytest.raises(DPError, match=r"mine\.jsonl:2: missing field 'answer'"):
        load_file(path)


def test_missing_file_and_unknown_names(tmp_path):
    with pytest.raises(DPError, match="not found"):
        load_file(tmp_path / "nope.jsonl")
    with pytest.raises(DPError, match="unknown dataset 'x'; known: .*aime24"):
        load_dataset("x")
    with pytest.raises(DPError, match="unknown format"):
        load_file(tmp_path / "nope.jsonl", fmt="xml")


def test_missing_shared_file_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("DP_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    with pytest.raises(DPError, match=str(tmp_path / "problems" / "math500.jsonl")):
        load_dataset("math500")


def test_embedded_set_is_deterministic_and_correct():
    problems = embedded_problems()
    assert problems == embedded_problems(seed=0) == load_dataset("arith")
    assert embedded_problems(seed=1) != problems
    assert len(problems) == 12 and len({p.question for p in problems}) == 12
    assert [p.problem_id for p in problems[:2]] == ["arith-000", "arith-001"]
    for p in problems:
        assert p.dataset == "arith" and p.kind == AnswerKind.NUMBER
        assert p.question.startswith("What is ") and p.question.endswith("?")
        expression = p.question[len("What is "):-1]
        assert eval(expression) == int(p.gold)  # noqa: S307 - our own generated arithmetic
    ops = {p.question.split()[3] for p in problems}
    assert ops == {"+", "-", "*", "/"}
    assert len(embedded_problems(40, seed=7)) == 40


def test_dataset_registry_has_descriptions():
    assert {"aime24", "aime25", "aime22-24", "math500", "gsm8k", "arith"} <= set(DATASETS)
    assert all(isinstance(v, str) and v for v in DATASETS.values())
