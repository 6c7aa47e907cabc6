"""Reads that must stay bounded at paper scale: prefixes by offsets, one problem at a time.

The exactness test runs on the real Qwen2.5-Math file; the memory test on a SYNTHETIC
paper-shaped cache (`benchmarks/scale_data.py`) written through the real writer.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dp.cache.store import Cache, RunInfo
from dp.judge.pairs import run_prefixes
from dp.judge.prefix_reader import read_prefixes, word_decisions
from dp.judge.truncation import TruncationRule, decision_points, prefix_text
from dp.simulate.replay.context import build_contexts
from tests.conftest import invoke

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scale_data import Vocab, problem_traces  # noqa: E402


@pytest.fixture(scope="module")
def qwen_cache(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("qwen") / "qwen.duckdb"
    r = invoke("import", data_dir / "traces" / "qwen25math_math_cot_100.jsonl", "--format", "qwen-math",
               "--run", "qwen", "--cache", path)
    assert r.exit_code == 0, r.output
    return path


@pytest.mark.parametrize("rule", ["tokens:1", "tokens:100", "tokens:5000", "words:1", "words:3", "words:25"])
def test_streamed_prefixes_equal_the_whole_text_cut(qwen_cache, rule):
    rule = TruncationRule.parse(rule)
    with Cache(qwen_cache) as c:
        problems = c.load_run("qwen")[:25]
        for p in problems:
            texts, offsets = c.texts(p.trace_ids), c.token_arrays(p.trace_ids, "end_offset")
            want = np.minimum(decision_points(rule, texts, offsets), p.lengths)
            dec, pre = read_prefixes(c, p.trace_ids, p.lengths, p.classes, rule)
            assert dec.tolist() == want.tolist()
            assert [x.text for x in pre] == [prefix_text(t, o, d) for t, o, d in zip(texts, offsets, want)]
            assert [x.answer_class for x in pre] == p.classes.tolist()


def test_word_heads_grow_until_the_kth_word_is_certain(qwen_cache):
    """A first head of 40 characters must be grown, and give the same points as a big one."""
    rule = TruncationRule.parse("words:3")
    cut = 0
    with Cache(qwen_cache) as c:
        for p in c.load_run("qwen")[:20]:
            small, _ = word_decisions(c, p.trace_ids, p.lengths, rule, first_head=40)
            big, _ = word_decisions(c, p.trace_ids, p.lengths, rule, first_head=10**7)
            assert small.tolist() == big.tolist()
            cut += int((big < p.lengths).sum())
    assert cut > 0  # some traces really have 3 reasoning words before their end


@pytest.fixture(scope="module")
def synthetic_cache(tmp_path_factory):
    """SYNTHETIC: 6 problems x 16 traces of ~5.6 K tokens (~0.5 M tokens), written by the real writer."""
    path = tmp_path_factory.mktemp("syn") / "syn.duckdb"
    vocab = Vocab(np.random.default_rng(1))
    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run="syn", model="SYNTHETIC", engine="synthetic", tokenizer="SYNTHETIC",
                             source="synthetic", dataset="synthetic", n=16))
        for pid in range(6):
            problem, gen = problem_traces(vocab, pid, 16, seed=1)
            c.add_problems("syn", [problem])
            c.write_traces("syn", list(gen))
    return path


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("rule", ["tokens:64", "words:5"])
def test_prefix_reads_never_hold_more_than_one_problem(synthetic_cache, rule):
    rule = TruncationRule.parse(rule)
    with Cache(synthetic_cache) as c:
        problems = c.load_run("syn")
        one = problems[0]
        # what one problem's texts and end offsets cost in Python (str of ASCII: 1 byte/char)
        one_problem = sum(len(t) for t in c.texts(one.trace_ids)) + 4 * int(one.lengths.sum())
        all_ids = np.concatenate([p.trace_ids for p in problems])
        # the bound would catch a whole-run read: tracemalloc does see these allocations
        assert _peak(lambda: (c.texts(all_ids), c.token_arrays(all_ids, "end_offset"))) > 3 * one_problem
        peak_pairs = _peak(lambda: run_prefixes(c, "syn", rule))
        peak_ctx = _peak(lambda: build_contexts(c, "syn", rule))
    assert peak_pairs < one_problem, (peak_pairs, one_problem)
    assert peak_ctx < one_problem, (peak_ctx, one_problem)
