"""Arrival detection on scripted token deltas: live cuts prefixes exactly where replay does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dp.judge.truncation import TruncationRule, decision_point
from dp.simulate.live.arrival import Arrival


@pytest.fixture(scope="module")
def token_text():
    from dp.generate.records import TokenText
    from dp.models import load_tokenizer

    return TokenText(load_tokenizer("smollm2-135m"))


def ids_of(tt, text):
    return tt.tokenizer(text, add_special_tokens=False)["input_ids"]


def stream(tt, rule, ids, cuts):
    """Feed `ids` in deltas ending at `cuts`; returns (decision point, ids fed when it was reached)."""
    a = Arrival(TruncationRule.parse(rule), tt)
    start = 0
    for end in [*cuts, len(ids)]:
        d = a.feed(ids[start:end], done=end == len(ids))
        start = end
        if d is not None:
            return d, end
    return None, len(ids)


def test_a_word_cut_at_the_end_of_a_delta_is_not_an_arrival(token_text):
    ids = ids_of(token_text, "buttery but so")
    assert [token_text.tokenizer.decode([i]) for i in ids] == ["but", "tery", " but", " so"]
    # one token per delta: "but" ends the first delta, but it is the start of "buttery"
    d, fed = stream(token_text, "words:1", ids, [1, 2, 3])
    assert (d, fed) == (3, 4)  # " but" (token 3) is confirmed once " so" shows it is a whole word
    text, offsets = token_text.decode(np.asarray(ids))
    assert d == decision_point(TruncationRule.parse("words:1"), text, offsets)
    # the whole stream in one delta, and a word at the very end of a finished trace
    assert stream(token_text, "words:2", ids, [])[0] == 4
    assert stream(token_text, "words:5", ids, [1, 2])[0] == 4  # fewer than 5 words: the whole trace


def test_tokens_rule_arrives_at_k_or_at_the_end():
    a = Arrival(TruncationRule.parse("tokens:3"), None)
    assert a.feed([1, 2]) is None and a.feed([3, 4]) == 3
    b = Arrival(TruncationRule.parse("tokens:3"), None)
    assert b.feed([1, 2], done=True) == 2


def test_live_arrival_equals_replay_decision_point_on_real_traces(token_text, data_dir):
    path = data_dir / "traces" / "qwen25math_math_cot_100.jsonl"
    texts = [r for line in path.read_text().splitlines()[:12] for r in json.loads(line)["response"][:2]]
    g = np.random.default_rng(0)
    checked = 0
    for text in texts:
        ids = ids_of(token_text, text)
        full, offsets = token_text.decode(np.asarray(ids))
        for rule in ("words:1", "words:3", "words:8", "tokens:50"):
            want = decision_point(TruncationRule.parse(rule), full, offsets)
            cuts = np.sort(g.choice(np.arange(1, len(ids)), size=min(40, len(ids) - 1), replace=False)).tolist()
            d, fed = stream(token_text, rule, ids, cuts)
            assert d == want, (rule, text[:80])
            assert fed >= d
            checked += 1
    assert checked == len(texts) * 4


def test_incremental_scan_keeps_a_bounded_tail(token_text):
    # 3000 words without a reasoning word, streamed in small deltas: the kept text stays short
    ids = ids_of(token_text, "the cat sat on a mat " * 500 + "so done")
    a = Arrival(TruncationRule.parse("words:1"), token_text)
    longest = 0
    for start in range(0, len(ids), 7):
        a.feed(ids[start:start + 7], done=start + 7 >= len(ids))
        longest = max(longest, len(a._tail))
    assert a.point is not None and longest < 400


def test_live_prefix_ids_differ_across_problems():
    from dp.simulate.live.problem import live_prefix_id

    ids = {live_prefix_id(p, t) for p in ("math-0001", "math-0002", "arith-3") for t in range(512)}
    assert len(ids) == 3 * 512 and max(ids) < 0
