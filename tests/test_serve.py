"""`dp serve` end to end (slow): a real server on 127.0.0.1 with the real engine, called with the
official `openai` client and raw HTTP; errors, 429, metrics, the recorded run replayed by
`dp simulate --order live` decision for decision, SIGTERM draining, and a dead engine answered 503.

One server for the module (SmolLM2-135M, n = 4, 32 tokens, tokens:8, jaccard); the tests run in
file order and the last one stops it with SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import openai
import pytest

from dp.cache.store import Cache
from dp.judge.base import load_judge
from dp.judge.truncation import TruncationRule
from dp.seeds import rng as make_rng
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.context import build_contexts
from dp.simulate.serve.request import trace_seeds
from tests.proc_helpers import DP, Proc, kill_leftovers, wait_gone

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
RUN = "serve-test"
SERVER = ["--n", "4", "--max-tokens", "32", "--truncate", "tokens:8", "--tau", "0.5", "--K2", "2",
          "--judge", "jaccard", "--seed", "0"]
ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*extra: str) -> SimpleNamespace:
    port = free_port()
    proc = Proc("serve", *SERVER, "--port", port, *extra, env=ENV)
    base = f"http://127.0.0.1:{port}"
    t0 = time.time()
    while time.time() - t0 < 400:
        if proc.p.poll() is not None:
            pytest.fail(f"dp serve exited: {proc.text[-3000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return SimpleNamespace(proc=proc, base=base, engines=proc.engines())
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail("dp serve did not become healthy")


def stop(s: SimpleNamespace) -> None:
    if s.proc.p.poll() is None:
        s.proc.p.send_signal(signal.SIGTERM)
        s.proc.finish(180)
    kill_leftovers(s.engines)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = tmp_path_factory.mktemp("serve") / "served.duckdb"
    s = start("--max-concurrent", "4", "--record", str(cache), "--record-run", RUN)
    s.cache = cache
    s.seen = {"200": 0, "400": 0, "404": 0, "429": 0, "tokens": 0}
    try:
        yield s
    finally:
        stop(s)


def ask(question: str, **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": question}], **kw}


def post(s, body, **kw) -> httpx.Response:
    r = httpx.post(s.base + "/v1/chat/completions", timeout=300, **({"json": body} if body is not None else kw))
    s.seen[str(r.status_code)] = s.seen.get(str(r.status_code), 0) + 1
    if r.status_code == 200:
        s.seen["tokens"] += r.json()["usage"]["completion_tokens"]
    return r


def well_formed(out: dict, n: int) -> dict:
    assert out["object"] == "chat.completion" and out["model"] == MODEL and out["id"].startswith("chatcmpl-")
    assert len(out["choices"]) == 1 and out["choices"][0]["message"]["role"] == "assistant"
    assert out["choices"][0]["finish_reason"] in ("stop", "length")
    dp = out["dp"]
    assert dp["traces_started"] == n == dp["traces_pruned"] + dp["traces_finished"] and dp["traces_finished"] >= 1
    assert out["usage"]["completion_tokens"] == dp["tokens_generated"] > 0
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    assert dp["answer"] is None or dp["answer"] in dp["votes"]
    assert dp["recorded"] is True and dp["run"] == RUN
    return dp


def test_openai_client_gets_one_pruned_answer(server):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 12 + 7?"}],
                                       seed=1, extra_body={"dp": {"policy": "deepprune", "tau": 0.5}})
    server.seen["200"] += 1
    server.seen["tokens"] += r.usage.completion_tokens
    dp = well_formed(r.model_dump(), 4)
    assert r.choices[0].message.content.strip()
    assert dp["seed"] == 1 and dp["trace_seeds"] == list(trace_seeds(1, 4)) and dp["policy"] == "deepprune"
    if dp["answer"] is not None:
        assert dp["answer"] in r.choices[0].message.content  # the returned trace voted for the answer


def test_raw_http_per_request_knobs_and_seeded_repeats(server):
    cons = post(server, ask("What is 9 + 6?", seed=3, n=5, dp={"policy": "cons"}))
    assert cons.status_code == 200, cons.text
    dc = well_formed(cons.json(), 5)
    assert dc["traces_pruned"] == 0 and dc["policy"] == "cons" and dc["judge"] is None
    again = post(server, ask("What is 9 + 6?", seed=3, n=5, dp={"policy": "cons"}))
    assert again.json()["choices"][0]["message"]["content"] == cons.json()["choices"][0]["message"]["content"]
    assert again.json()["dp"]["tokens_generated"] == dc["tokens_generated"]  # same seeds, same traces
    pruned = post(server, ask("What is 9 + 6?", seed=3, n=5, dp={"tau": 0.0, "K2": 1, "truncate": "tokens:4"}))
    dpp = well_formed(pruned.json(), 5)
    assert dpp["params"]["tau"] == 0.0 and dpp["params"]["K2"] == 1 and dpp["truncate"] == "tokens:4"
    assert dpp["traces_pruned"] >= 1 and dpp["tokens_generated"] < dc["tokens_generated"]


@pytest.mark.parametrize("body, raw, status, param", [
    (None, b"{not json", 400, None),
    ({"messages": "hi"}, None, 400, "messages"),
    (ask("2 + 2?", n=0), None, 400, "n"),
    (ask("2 + 2?", logprobs=True), None, 400, "logprobs"),
    (ask("2 + 2?", stream=True), None, 400, "stream"),
    (ask("2 + 2?", dp={"policy": "unknown"}), None, 400, "dp.policy"),
    (ask("2 + 2?", dp={"judge": "unknown"}), None, 400, "dp.judge"),
    (ask("2 + 2?", model="gpt-4o"), None, 404, "model"),
    (ask("count: " + "one two three " * 300), None, 400, "messages"),
])
def test_bad_requests_get_openai_errors(server, body, raw, status, param):
    r = post(server, body, content=raw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"] and set(err) == {"message", "type", "param", "code"}


def test_openai_client_raises_the_errors(server):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "2 + 2?"}]
    with pytest.raises(openai.BadRequestError, match="unknown policy"):
        client.chat.completions.create(model=MODEL, messages=msgs, extra_body={"dp": {"policy": "nope"}})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=msgs)
    server.seen["400"] += 1
    server.seen["404"] += 1
    r = httpx.get(server.base + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_concurrent_clients_beyond_the_limit_get_429_and_the_rest_answers(server):
    """8 clients at once against --max-concurrent 4: none lost, every answer well formed."""
    go = threading.Barrier(8)

    def one(i: int) -> httpx.Response:
        go.wait()
        return post(server, ask(f"What is {i} + {i + 3}?", seed=100 + i))

    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(one, range(8)))
    codes = sorted(r.status_code for r in rs)
    assert set(codes) <= {200, 429} and codes.count(200) >= 4 and codes.count(429) >= 1, codes
    for r in rs:
        if r.status_code == 200:
            well_formed(r.json(), 4)
        else:
            assert r.json()["error"]["type"] == "rate_limit_exceeded"
    assert httpx.get(server.base + "/health").json()["status"] == "ok"


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_and_the_recorded_run_agree_with_the_answers(server):
    text = httpx.get(server.base + "/metrics").text
    for status in ("200", "400", "404", "429"):
        assert _metric(text, f'dp_requests_total{{status="{status}"}}') == server.seen[status], status
    assert _metric(text, "dp_tokens_generated_total") == server.seen["tokens"]
    assert _metric(text, "dp_request_latency_seconds_count") == server.seen["200"]
    with Cache(server.cache) as c:
        info = c.run_info(RUN)
        assert info["source"] == "serve" and info["model"] == MODEL
        problems = c.load_run(RUN)
        assert len(problems) == server.seen["200"]
        assert sum(int(p.lengths.sum()) for p in problems) == server.seen["tokens"]  # tokens really generated
        first = problems[0]
        req = info["settings"]["requests"][first.problem.problem_id]
        assert req["seed"] == 1 and req["sampling"]["seed"] == 1 and req["policy"] == "deepprune"
        assert first.problem.gold is None and first.problem.question == "What is 12 + 7?"
        assert [int(x) for x in first.seeds] == list(trace_seeds(1, 4))
        assert not first.correct.any()


def test_dp_simulate_replays_the_recorded_run_with_the_same_decisions(server):
    rule = TruncationRule.parse("tokens:8")
    with Cache(server.cache) as c:
        reqs = c.run_info(RUN)["settings"]["requests"]
        done = c.run_info(RUN)["settings"]["done"]
        ctxs = build_contexts(c, RUN, rule, load_judge("jaccard"))
        rows = {pid: c.con.execute("SELECT decision, decision_token FROM live_traces WHERE run = ? AND "
                                   "problem_id = ? ORDER BY idx", [RUN, pid]).fetchall() for pid in reqs}
    served = {"policy": "deepprune", "tau": 0.5, "K2": 2, "truncate": "tokens:8"}
    same = [x for x in ctxs if served == {"policy": reqs[x.problem_id]["policy"], "truncate": reqs[x.problem_id]["truncate"],
                                          **{k: reqs[x.problem_id]["params"].get(k) for k in ("tau", "K2")}}]
    assert len(same) >= 5
    for ctx in same:  # every served decision, replayed by the simulator in the live arrival order
        policy = make_policy("deepprune", tau=0.5, K2=2)
        plan = policy.plan(ctx, ctx.live_order[None, :], make_rng(0, "deepprune", ctx.problem_id))  # server seed
        assert plan.voters[0].tolist() == [d == "finish" for d, _ in rows[ctx.problem_id]], ctx.problem_id
        assert int(plan.judge_pairs[0]) == done[ctx.problem_id]["judge_pairs"]
    # the first problem (the openai-client request) through the command line
    r = subprocess.run([*DP, "simulate", "--cache", str(server.cache), "--run", RUN, "--policy", "deepprune",
                        "--tau", "0.5", "--K2", "2", "--truncate", "tokens:8", "--judge", "jaccard",
                        "--order", "live", "--seed", "0", "--limit", "1", "--no-store", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)[0]
    first = ctxs[0]
    live = rows[first.problem_id]
    expected = sum(t if d == "prune" else int(n) for (d, t), n in zip(live, first.lengths))  # paper accounting
    assert out["orders"] == 1 and out["tokens"] == expected
    assert out["judge_pairs"] == done[first.problem_id]["judge_pairs"]


def test_sigterm_drains_the_request_in_flight_and_ends_the_engine(server):
    with Cache(server.cache) as c:
        before = len(c.load_run(RUN))
    result = {}
    t = threading.Thread(target=lambda: result.update(r=post(server, ask("What is 5 + 8?", seed=9, max_tokens=32))))
    t.start()
    t0 = time.time()
    while httpx.get(server.base + "/health").json()["in_flight"] < 1 and time.time() - t0 < 30:
        time.sleep(0.05)
    server.proc.p.send_signal(signal.SIGTERM)
    t.join(120)
    assert result["r"].status_code == 200, result["r"].text
    well_formed(result["r"].json(), 4)
    assert server.proc.finish(120) == 0, server.proc.text[-2000:]
    assert "engine shut down" in server.proc.text
    assert wait_gone(server.engines) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base + "/health")
    with Cache(server.cache) as c:
        assert len(c.load_run(RUN)) == before + 1  # the drained request was recorded too


def test_a_dead_engine_is_answered_503_and_the_server_stays_up():
    s = start("--max-tokens", "8")
    try:
        assert s.engines
        for pid in s.engines:  # the engine dies under the server
            os.kill(pid, signal.SIGKILL)
        t0 = time.time()
        while httpx.get(s.base + "/health").status_code != 503 and time.time() - t0 < 30:
            time.sleep(0.2)
        assert httpx.get(s.base + "/health").status_code == 503
        r = httpx.post(s.base + "/v1/chat/completions", json=ask("2 + 2?"), timeout=60)
        assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
        assert s.proc.p.poll() is None  # still serving (errors)
        s.proc.p.send_signal(signal.SIGTERM)
        assert s.proc.finish(120) == 0, s.proc.text[-2000:]
        assert wait_gone(s.engines) == []
    finally:
        stop(s)
