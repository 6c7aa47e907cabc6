"""`dp serve` under load without vLLM (`tests.fake_engine`): a slow judge does not stall the server,
recording waits for a busy cache and never loses a request, grading is bounded in time."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from dp.simulate.serve.app import Served, ServeSettings, create_app
from dp.simulate.serve.request import ServerDefaults
from tests.fake_engine import FakeEngine


class SlowJudge:
    """A judge that takes `seconds` per call (as a neural judge on a busy CPU does)."""

    name = "slow"
    cacheable = False

    def __init__(self, seconds: float):
        self.seconds, self.calls = seconds, 0

    def score(self, left, right) -> np.ndarray:
        self.calls += 1
        time.sleep(self.seconds)
        return np.full(len(left), 0.9)


@pytest.fixture(scope="module")
def engine():
    return FakeEngine(delta=1, pause=0.002)


def served(engine, record_spec=None, **kw) -> Served:
    d = ServerDefaults(model="smollm2-135m", n=4, max_tokens=64, policy="deepprune", params={"tau": 0.5},
                       judge="jaccard", truncate="tokens:6", seed=3, **kw)
    return Served(engine, ServeSettings(defaults=d), record_spec)


async def _health_while_answering(s: Served) -> tuple[dict, list[float]]:
    app = create_app(s)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dp") as client:
        chat = asyncio.ensure_future(client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "What is 2 + 3?"}]}, timeout=60))
        waits = []  # per round of GET /health and a 20 ms pause: what a /health asked at any moment waited
        while not chat.done():
            t0 = time.perf_counter()
            r = await client.get("/health")
            assert r.status_code == 200
            await asyncio.sleep(0.02)
            waits.append(time.perf_counter() - t0)
        out = await chat
    assert out.status_code == 200, out.text
    return out.json(), waits


def test_health_answers_at_once_while_a_slow_judge_works(engine):
    s = served(engine)
    judge = SlowJudge(0.6)
    s.judges["jaccard"] = judge
    out, waits = asyncio.run(_health_while_answering(s))
    assert judge.calls >= 3  # 4 traces: every later arrival is judged against the clusters so far
    assert out["dp"]["judge_seconds"] >= 0.6 * judge.calls - 0.05  # the judge's own time, measured in its thread
    assert len(waits) >= 5 and max(waits) < 0.25, waits  # /health never waited for a judge call (0.6 s each)


def test_lm_embed_prefix_memory_is_bounded():
    import torch

    from dp.judge.lm_embed import LMEmbedJudge, LMEmbedSettings

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(128, 8)

        def forward(self, input_ids, attention_mask, output_hidden_states):
            h = self.emb(input_ids)
            return type("Out", (), {"hidden_states": (h, h)})

    class Tok:
        eos_token_id = 0

        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [[ord(c) % 127 + 1 for c in t] for t in texts]}

    torch.manual_seed(0)
    judge = LMEmbedJudge(LMEmbedSettings(), memory=50)
    judge._lm = (TinyLM().eval(), Tok())  # a stand-in LM: no model weights in the fast tier
    first = judge.embed(["prefix 0", "prefix 1"])
    for i in range(20):  # a server's traffic: 200 distinct prefixes, 10 per call
        judge.embed([f"prefix {i * 10 + k}" for k in range(10)])
    passes = judge.texts_embedded
    again = judge.embed(["prefix 0", "prefix 1"])  # long forgotten: embedded again, to the same vectors
    assert judge.texts_embedded == passes + 2
    np.testing.assert_allclose(again, first, rtol=1e-6)
    assert judge.remembered <= 50
    big = judge.embed([f"other {k}" for k in range(80)])  # one call's texts are all held until it returns
    assert big.shape == (80, 8) and judge.remembered == 50


def record_spec(path, run="serve-t"):
    from dp.simulate.serve.record import RunSpec, check_target

    check_target(str(path), run, "smollm2-135m")
    return RunSpec(path=str(path), run=run, model="smollm2-135m", engine="fake", tokenizer="smollm2-135m",
                   prompt_template="t", sampling={}, n=4, seed=3, settings={})


def hold_writer(path, seconds: float):
    """Another process that holds the cache's writer lock for `seconds` (as a `dp simulate` replay does)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time\n"
                          f"c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep({seconds})"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


async def _ask(s: Served, k: int) -> list[dict]:
    app = create_app(s)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dp") as client:
        rs = [await client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": f"What is 2 + {i}?"}], "dp": {"policy": "cons"}}, timeout=60)
            for i in range(k)]
        if getattr(s, "recorder", None) is not None:
            await s.recorder.close()
    assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
    return [r.json()["dp"] for r in rs]


def test_a_request_is_recorded_after_a_writer_held_longer_than_the_lock_wait(engine, tmp_path, monkeypatch):
    from dp.cache.store import Cache

    monkeypatch.setenv("DP_LOCK_WAIT", "0.5")
    path = tmp_path / "served.duckdb"
    s = served(engine, record_spec(path))
    holder = hold_writer(path, 3.0)  # six times the lock wait
    try:
        t0 = time.perf_counter()
        out = asyncio.run(_ask(s, 2))
        waited = time.perf_counter() - t0
    finally:
        holder.wait(timeout=30)
    assert all(o["recorded"] and "record_error" not in o for o in out), out  # nothing lost ...
    assert waited >= 2.0  # ... because the writer waited for the other process
    with Cache(path) as c:
        assert sorted(p.problem.problem_id for p in c.load_run("serve-t")) == sorted(o["problem_id"] for o in out)


def test_a_response_does_not_wait_for_a_busy_cache_and_its_record_follows(engine, tmp_path, monkeypatch):
    import dataclasses

    from dp.cache.store import Cache

    monkeypatch.setenv("DP_LOCK_WAIT", "0.5")
    path = tmp_path / "served.duckdb"
    s = served(engine, record_spec(path))
    s.settings = dataclasses.replace(s.settings, record_wait=0.2)
    holder = hold_writer(path, 3.0)
    try:
        out = asyncio.run(_ask(s, 2))  # returns once the queue is written (close)
    finally:
        holder.wait(timeout=30)
    assert [o["recorded"] for o in out] == [False, False] and all(o["record_queued"] for o in out)
    with Cache(path) as c:
        assert len(c.load_run("serve-t")) == 2


TOWER = ["9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1"]  # Math-Verify runs on these for good without its alarm


def answered(texts: list[str], pid: str = "chatcmpl-p"):
    from dp.simulate.live.problem import ProblemLive
    from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

    n = len(texts)
    records = [TraceRecord(problem_id=pid, index=t, text=x, token_ids=np.arange(3, dtype=np.int32),
                           offsets=np.array([1, 2, len(x)], dtype=np.int32), seed=t, finish_reason=FinishReason.STOP)
               for t, x in enumerate(texts)]
    live = ProblemLive(problem_id=pid, records=records, arrival=list(range(n)), decision_token=np.full(n, 3),
                       finished=np.ones(n, bool), tokens=np.full(n, 3), correct=False, seconds=0.1)
    problem = Problem(dataset="serve", problem_id=pid, question="q", gold=None, kind=AnswerKind.EXPRESSION)
    return {"problem": problem, "request_id": pid}, live


def record_tower(path: str) -> None:
    """The server's recording path on a tower of powers, then on an ordinary request (in a child process)."""
    from dp.simulate.serve.record import Recorder

    async def go():
        rec = Recorder(record_spec(path))
        first = rec.submit(*answered([f"so \\boxed{{{a}}}" for a in TOWER], "chatcmpl-a"))
        second = rec.submit(*answered(["\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{3}"], "chatcmpl-b"))
        assert [await first, await second] == [True, True]
        await rec.close()

    asyncio.run(go())


def test_a_pathological_answer_is_graded_in_bounded_time_and_the_recorder_goes_on(tmp_path):
    import subprocess
    import sys

    from dp.cache.store import Cache

    path = tmp_path / "served.duckdb"
    try:  # a child process: a hang (big-int powers hold the GIL) must not hang the test session
        r = subprocess.run([sys.executable, "-c", "from tests.test_serve_robust import record_tower; "
                            f"record_tower({str(path)!r})"], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("recording hung on a pathological answer (90 s)")
    assert r.returncode == 0, r.stderr[-2000:]
    with Cache(path) as c:
        by_id = {p.problem.problem_id: p for p in c.load_run("serve-t")}
    assert list(by_id["chatcmpl-a"].classes) == [0, 1]  # not shown equivalent
    assert list(by_id["chatcmpl-b"].classes) == [0, 0, 1]  # Math-Verify still groups the ordinary answers


def test_grading_past_its_time_limit_falls_back_to_strings_and_restarts_the_worker():
    from dp.answers import FAILURES
    from dp.grading import Grader
    from dp.types import AnswerKind

    g = Grader(timeout=0.5)
    try:
        before = FAILURES["grading"]
        t0 = time.perf_counter()
        out = g.classes([TOWER[0], None, TOWER[1], TOWER[0]], AnswerKind.EXPRESSION)
        assert time.perf_counter() - t0 < 10  # the 0.5 s limit, and a worker killed
        assert list(out) == [0, -1, 1, 0] and g.timeouts == 1 and FAILURES["grading"] == before + 1
        assert list(g.classes(["\\frac{1}{2}", "0.5", "x"], AnswerKind.EXPRESSION)) == [0, 0, 1]  # a fresh worker
    finally:
        g.close()


def test_traces_a_policy_never_started_are_not_stored_as_traces(tmp_path):
    import json

    from dp.cache.store import Cache
    from dp.simulate.live.store import read_problem
    from dp.simulate.serve.record import read_requests, record
    from tests.conftest import invoke

    path = tmp_path / "served.duckdb"
    spec = record_spec(path)
    request, live = answered(["\\boxed{5}", "\\boxed{5}", "", ""], "chatcmpl-esc")
    live.started = np.array([True, True, False, False])  # ESC stopped after its first window of 2
    live.finished = live.started.copy()
    live.tokens = np.array([3, 3, 0, 0])
    live.decision_token = live.tokens.copy()
    live.arrival = [0, 1]
    record(spec, request, live)
    r = invoke("cache", "info", "--cache", path, "--json")
    assert r.exit_code == 0, r.output
    (info,) = [x for x in json.loads(r.output)["runs"] if x["run"] == "serve-t"]
    assert info["traces"] == 2 and info["tokens"] == 6  # the two that ran; none without an answer
    assert info["same_answer_pair_rate"] == 1.0
    with Cache(path) as c:
        back = read_problem(c, "serve-t", "chatcmpl-esc", read_requests(c, "serve-t")["chatcmpl-esc"]["done"])
    assert list(back.started) == [True, True, False, False] and [r.index for r in back.records] == [0, 1, 2, 3]
    assert [r.text for r in back.records] == ["\\boxed{5}", "\\boxed{5}", "", ""] and back.arrival == [0, 1]


def test_recording_a_request_writes_that_request_only(tmp_path):
    from dp.cache.store import Cache
    from dp.simulate.serve.record import record

    path = tmp_path / "served.duckdb"
    spec = record_spec(path)
    settings = []
    for i in range(3):
        request, live = answered(["\\boxed{5}", "\\boxed{6}"], f"chatcmpl-{i}")
        record(spec, {**request, "seed": i, "policy": "cons"}, live)
        with Cache(path) as c:
            settings.append(c.con.execute("SELECT settings FROM runs WHERE run = 'serve-t'").fetchone()[0])
    assert settings[0] == settings[1] == settings[2]  # no request is kept in (and rewritten with) the run's settings
    from dp.simulate.serve.record import read_requests

    with Cache(path) as c:
        reqs = read_requests(c, "serve-t")
    assert sorted(reqs) == ["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"]
    assert [reqs[f"chatcmpl-{i}"]["request"]["seed"] for i in range(3)] == [0, 1, 2]
    assert reqs["chatcmpl-1"]["done"] == {"correct": None, "seconds": 0.1, "judge_seconds": 0.0, "judge_pairs": 0}


def test_health_answers_at_once_while_slim_sc_embeds(engine, monkeypatch):
    from dp.simulate.policies.slimsc import SlimSC

    calls = []

    def slow_embed(self, texts):  # as MiniLM on a busy CPU
        calls.append(len(texts))
        time.sleep(0.4)
        return np.ones((len(texts), 4), dtype=np.float32) / 2.0

    monkeypatch.setattr(SlimSC, "embed", slow_embed)
    d = ServerDefaults(model="smollm2-135m", n=3, max_tokens=64, policy="slimsc", params={"every": 8},
                       judge="jaccard", truncate="tokens:6", seed=3)
    out, waits = asyncio.run(_health_while_answering(Served(engine, ServeSettings(defaults=d))))
    assert len(calls) >= 3 and out["dp"]["traces_pruned"] >= 1  # identical segments: all but the first pruned
    assert len(waits) >= 4 and max(waits) < 0.25, waits
