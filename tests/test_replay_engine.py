"""The trace-driven engine (`dp.generate.replay_engine`, a stand-in for a GPU's pace): it streams a cached
run back in vLLM's output classes, merged deltas included, and `dp live --engine replay` on it decides
as `dp simulate` does in the live order. Fast tier: a cache written here, the SmolLM2 tokenizer only."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from dp.cache.store import Cache, RunInfo, stored_float
from dp.confidence import token_confidence
from dp.seeds import trace_seed
from dp.types import AnswerKind, FinishReason, Problem
from tests.conftest import invoke

K = 5


def _write_run(path, n=6, seed=1, finish="stop") -> None:
    """Run 'g': 2 problems x n traces of real text (varied answers), source generate, K top log-probs."""
    from dp.generate.records import TokenText, build_record
    from dp.generate.sampling import SamplingSpec
    from dp.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    tt = TokenText(tok)
    rng = np.random.default_rng(seed)
    spec = SamplingSpec(n=n, max_tokens=80, seed=seed, topk_logprobs=K)
    problems = [Problem("arith", f"p{j}", f"What is {j} + 4?", str(j + 4), AnswerKind.EXPRESSION) for j in range(2)]
    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run="g", model="smollm2-135m", engine="test", tokenizer="smollm2-135m",
                             source="generate", dataset="arith", n=n, seed=seed, sampling=spec.to_dict()))
        c.add_problems("g", problems)
        recs = []
        for p in problems:
            for i in range(n):
                words = " ".join(rng.choice(["so", "then", "we", "add", "carry", "sum", "check"], 12 + i))
                text = f"Let me think: {words}. The answer is \\boxed{{{int(p.gold) + int(rng.integers(0, 2))}}}."
                ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int32)
                m = ids.size
                top = -np.sort(rng.exponential(1.0, (m, K)), axis=1)  # descending log-probs
                recs.append(build_record(
                    problem_id=p.problem_id, index=i, seed=trace_seed(seed, p.problem_id, i), token_ids=ids,
                    sampled_logprobs=top[:, 0].astype(np.float32), topk_ids=rng.integers(0, 49152, (m, K)),
                    topk_logprobs=top.astype(np.float32), finish_reason=FinishReason(finish), k=K, store_topk=False,
                    token_text=tt))
        c.write_traces("g", recs)
        c.assign_classes("g", [p.problem_id for p in problems])


@pytest.fixture(scope="module")
def replay_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "g.duckdb"
    _write_run(path)
    return path


def test_replay_streams_the_cached_traces_through_vllm_outputs_merged_deltas_included(replay_cache):
    """A consumer that falls behind gets merged deltas (vLLM's own collector); what StreamEngine reads
    from them is the cached trace: ids, sampled log-probs, and top-k giving exactly the cached confidence."""
    from dp.generate.prompts import build_prompt
    from dp.generate.replay_engine import replay_stream_engine
    from dp.generate.sampling import SamplingSpec
    from dp.generate.stream import Stream

    with Cache(replay_cache) as c:
        pt = c.load_run("g")[0]
        want = {col: c.token_arrays(pt.trace_ids, col) for col in ("token_id", "logprob", "confidence")}

        async def main():
            eng = replay_stream_engine(c, "g")
            spec = SamplingSpec.from_dict(c.run_info("g")["sampling"])
            prompt = eng.tokenizer(build_prompt(eng.tokenizer, pt.problem), add_special_tokens=False)["input_ids"]
            sizes: list[list[int]] = []

            async def one(t, slow):
                s, seen, got = Stream(f"r{t}"), 0, []
                async for _ in eng.stream(s, prompt, spec, int(pt.seeds[t])):
                    got.append(s.n - seen)
                    seen = s.n
                    for _ in range(slow):
                        await asyncio.sleep(0)
                sizes.append(got)
                return s

            streams = await asyncio.gather(*[one(t, 3 * (t % 2)) for t in range(pt.n)])
            eng.close()
            return streams, sizes

        streams, sizes = asyncio.run(main())
    assert max(max(g) for g in sizes) > 1  # the slow consumers got merged deltas
    for t, s in enumerate(streams):
        assert s.ids == want["token_id"][t].tolist()
        assert s.finish == FinishReason.STOP
        assert np.array_equal(np.asarray(s.sampled, np.float32), want["logprob"][t])
        conf = stored_float(token_confidence(np.asarray(s.topk_lp, np.float32), K))
        assert np.array_equal(conf, want["confidence"][t])


def test_replay_abort_ends_with_abort_and_no_more_tokens(replay_cache):
    from dp.generate.prompts import build_prompt
    from dp.generate.replay_engine import replay_stream_engine
    from dp.generate.sampling import SamplingSpec
    from dp.generate.stream import Stream

    with Cache(replay_cache) as c:
        pt = c.load_run("g")[1]

        async def main():
            eng = replay_stream_engine(c, "g")
            spec = SamplingSpec.from_dict(c.run_info("g")["sampling"])
            prompt = eng.tokenizer(build_prompt(eng.tokenizer, pt.problem), add_special_tokens=False)["input_ids"]
            s = Stream("a")
            async for _ in eng.stream(s, prompt, spec, int(pt.seeds[2])):
                if s.n >= 3 and s.finish is None:
                    await eng.abort("a")
            eng.close()
            return s

        s = asyncio.run(main())
    assert s.finish == FinishReason.ABORT and 3 <= s.n < int(pt.lengths[2])


def test_replay_of_an_unknown_prompt_is_one_line_error(replay_cache):
    from dp.errors import DPError
    from dp.generate.replay_engine import replay_stream_engine
    from dp.generate.sampling import SamplingSpec
    from dp.generate.stream import Stream

    with Cache(replay_cache) as c:
        async def main():
            eng = replay_stream_engine(c, "g")
            async for _ in eng.stream(Stream("x"), [1, 2, 3], SamplingSpec(topk_logprobs=K), 0):
                pass

        with pytest.raises(DPError, match="no problem of run 'g' has this prompt"):
            asyncio.run(main())


@pytest.mark.parametrize("policy", [
    ["--policy", "deepprune", "--judge", "jaccard", "--truncate", "tokens:6", "--K2", "2"],
    ["--policy", "deepconf-high", "--warmup", "2", "--conf-window", "4"],
    ["--policy", "esc", "--window", "2"],
])
def test_live_on_the_replay_engine_decides_as_simulate(tmp_path, replay_cache, policy):
    import shutil

    path = tmp_path / "c.duckdb"
    shutil.copy(replay_cache, path)
    r = invoke("live", "--cache", path, "--run", "g", "--engine", "replay", *policy, "--compare", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["decisions_total"] == 12 and out["decisions_matched"] == 12, out
    with Cache(path) as c:
        assert "replay" in c.run_info(out["live_run"])["engine"]
        ref = {(p.problem.problem_id, int(i)): a.tolist() for p in c.load_run("g")
               for i, a in zip(p.index, c.token_arrays(p.trace_ids))}
        for p in c.load_run(out["live_run"]):
            for i, a in zip(p.index, c.token_arrays(p.trace_ids)):
                assert a.tolist() == ref[p.problem.problem_id, int(i)][: a.size]


def test_replay_rate_needs_the_replay_engine(replay_cache):
    r = invoke("live", "--cache", replay_cache, "--run", "g", "--replay-rate", "100")
    assert r.exit_code != 0 and "needs --engine replay" in r.output
