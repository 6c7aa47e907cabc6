"""The one truncation rule: parsing and decision points worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dp.errors import DPError
from dp.judge.truncation import (
    REASONING_WORDS,
    TruncationRule,
    decision_point,
    decision_points,
    prefix_text,
)

TEXT = "First, so we compute. Wait, thus the answer."
# whitespace tokens: First,(6) so(9) we(12) compute.(21) Wait,(27) thus(32) the(36) answer.(44)
OFFSETS = np.array([6, 9, 12, 21, 27, 32, 36, 44])


@pytest.mark.parametrize("s", ["tokens:500", "words:25", "tokens:1", "words:3:wait,so"])
def test_parse_round_trips(s):
    assert str(TruncationRule.parse(s)) == s
    assert TruncationRule.parse(str(TruncationRule.parse(s))) == TruncationRule.parse(s)


@pytest.mark.parametrize("s", ["tokens", "tokens:0", "tokens:-1", "foo:3", "tokens:3:wait", "words:x", "", "words:2:"])
def test_malformed_rule_is_one_line_error(s):
    with pytest.raises(DPError, match=rf"^bad truncation rule '{s}': expected tokens:K or words:K with K >= 1$"):
        TruncationRule.parse(s)


def test_default_word_list_is_the_documented_one():
    assert REASONING_WORDS[:8] == ("wait", "thus", "since", "so", "therefore", "but", "hmm", "alternatively")
    assert TruncationRule.parse("words:25").words == REASONING_WORDS


@pytest.mark.parametrize("rule, expected", [
    ("tokens:3", 3), ("tokens:8", 8), ("tokens:100", 8),
    ("words:1", 2),  # "so" ends at 9 -> token 2 ("so", end 9)
    ("words:2", 5),  # "Wait" ends at 26 -> token 5 ("Wait,", end 27)
    ("words:3", 6),  # "thus" ends at 32
    ("words:4", 8),  # fewer than 4 reasoning words: the whole trace
    ("words:1:answer", 8), ("words:1:compute,first", 1),
])
def test_decision_point_by_hand(rule, expected):
    assert decision_point(TruncationRule.parse(rule), TEXT, OFFSETS) == expected


def test_word_boundaries_and_case():
    text = "Also butter, SO then Hmmm; hmm"
    off = np.array([4, 12, 15, 20, 26, 30])
    # "Also", "butter" and "Hmmm" are not reasoning words; "SO" is word 1, "hmm" word 2
    assert decision_point(TruncationRule.parse("words:1"), text, off) == 3
    assert decision_point(TruncationRule.parse("words:2"), text, off) == 6


def test_word_split_over_subword_tokens():
    # "therefore x" as tokens "there" | "fore" | " x": the word ends inside token 2
    assert decision_point(TruncationRule.parse("words:1"), "therefore x", np.array([5, 9, 11])) == 2


def test_phrases_match_across_whitespace():
    rule = TruncationRule.parse("words:1:let me")
    assert decision_point(rule, "ok let\nme see", np.array([2, 6, 9, 13])) == 3


def test_empty_trace():
    for rule in ("tokens:5", "words:2"):
        assert decision_point(TruncationRule.parse(rule), "", np.zeros(0, np.int32)) == 0


def test_decision_points_vectorised_match_single():
    texts = [TEXT, "so so so", ""]
    offs = [OFFSETS, np.array([2, 5, 8]), np.zeros(0, np.int32)]
    for s in ("tokens:2", "words:2"):
        rule = TruncationRule.parse(s)
        assert decision_points(rule, texts, offs).tolist() == [decision_point(rule, t, o) for t, o in zip(texts, offs)]


def test_prefix_text():
    assert prefix_text(TEXT, OFFSETS, 2) == "First, so"
    assert prefix_text(TEXT, OFFSETS, 0) == ""
    assert prefix_text(TEXT, OFFSETS, 99) == TEXT
