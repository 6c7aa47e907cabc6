"""`dp serve`'s app on a fake engine (fast): every live policy answers and is recorded and replayed
decision for decision, settings that cannot prune are warned about, an in-sample judge is named,
hostile requests get 400, `--api-key` and `stream: true` as OpenAI clients expect them."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from dp.cache.store import Cache
from dp.judge.base import load_judge
from dp.judge.insample import problem_digest
from dp.judge.truncation import TruncationRule
from dp.seeds import rng as make_rng
from dp.simulate.policies.registry import make_policy
from dp.simulate.replay.context import build_contexts, equip
from dp.simulate.serve.app import Served, ServeSettings, create_app
from dp.simulate.serve.record import RunSpec
from dp.simulate.serve.request import ServerDefaults, live_policies
from tests.fake_engine import FakeEngine

MODEL = "smollm2-135m"
D = ServerDefaults(model=MODEL, n=8, max_tokens=64, judge="jaccard", truncate="tokens:8", params={"K2": 2}, seed=3)
FAST = [p for p in live_policies() if p != "slimsc"]  # slimsc loads its embedding model: slow tier


def app(tmp_path=None, engine=None, **settings):
    spec = None
    if tmp_path is not None:
        spec = RunSpec(path=str(tmp_path / "served.duckdb"), run="serve-t", model=MODEL, engine="fake",
                       tokenizer=MODEL, prompt_template="t", sampling={}, n=D.n, seed=D.seed, settings={})
    served = Served(engine or FakeEngine(answers=("5",), repeats=(1, 2)), ServeSettings(defaults=D, **settings),
                    spec)
    return served, TestClient(create_app(served))


def ask(question="What is 2 + 3?", **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": question}], **kw}


@pytest.mark.parametrize("policy", [*FAST, pytest.param("slimsc", marks=pytest.mark.slow)])
def test_every_live_policy_answers_is_recorded_and_replays_decision_for_decision(tmp_path, policy):
    """ESC and Adaptive stop after the first wave here (every trace answers 5), so their arrival
    list covers only the started traces: the vote must still count (it was a 500 before)."""
    served, client = app(tmp_path)
    extra = {"warmup": 3, "conf_window": 4, "window": 3, "wave": 2, "every": 8}
    r = client.post("/v1/chat/completions", json=ask(seed=1, dp={"policy": policy, **extra}))
    assert r.status_code == 200, r.text
    dp = r.json()["dp"]
    assert dp["recorded"] is True and dp["answer"] == "5" and dp["traces_finished"] >= 1
    assert "\\boxed{5}" in r.json()["choices"][0]["message"]["content"]
    if policy in ("esc", "adaptive"):
        assert dp["traces_started"] < 8  # stopped early: a partial arrival list
    rule = TruncationRule.parse("tokens:8")
    built = equip(make_policy(policy, K2=2, **extra, accounting="concurrent"))  # Slim-SC: its embedder
    with Cache(tmp_path / "served.duckdb") as c:
        ctx = build_contexts(c, "serve-t", rule, load_judge("jaccard") if built.needs_judge else None,
                             confidence=getattr(built, "needs_confidence", False))[0]
        decision = dict(c.con.execute("SELECT idx, decision FROM live_traces WHERE run = 'serve-t'").fetchall())
        index = c.load_run("serve-t")[0].index  # the stored traces (never-started ones are not stored)
        # the order `dp simulate --order live` replays: arrivals, then the rest, over the stored traces
        assert ctx.live_order is not None
        plan = built.plan(ctx, ctx.live_order[None, :], make_rng(D.seed, policy, ctx.problem_id))
    assert plan.voters[0].tolist() == [decision[int(i)] == "finish" for i in index]
    assert all(d == "skip" for i, d in decision.items() if i not in set(index.tolist()))
    assert dp["traces_finished"] == sum(d == "finish" for d in decision.values())


@pytest.mark.parametrize("policy", ["esc", "adaptive"])
def test_wave_policies_that_stop_early_answer_200_with_their_own_defaults(tmp_path, policy):
    _, client = app(tmp_path)
    r = client.post("/v1/chat/completions", json=ask(seed=2, dp={"policy": policy}))
    assert r.status_code == 200, r.text
    dp = r.json()["dp"]
    assert dp["traces_started"] < 8 and dp["answer"] == "5" and dp["votes"] == {"5": dp["traces_finished"]}
    assert dp["recorded"] is True


@pytest.mark.parametrize("extra, n, max_tokens, words", [
    ({"policy": "deepprune", "K2": 8}, 8, 64, "N = 8 <= K2 = 8"),
    ({"policy": "deepconf-low", "warmup": 8}, 8, 64, "warm-up 8 >= N = 8"),
    ({"policy": "deepconf-high", "warmup": 2, "conf_window": 100}, 8, 64, "conf_window 100 > max_tokens 64"),
    ({"policy": "deepprune", "truncate": "tokens:64"}, 8, 64, "covers the whole trace"),
    ({"policy": "esc", "window": 8}, 8, 64, "window 8 >= N = 8"),
    ({"policy": "random", "keep": 4}, 4, 64, "N = 4 <= keep = 4"),
])
def test_settings_that_cannot_prune_are_warned_in_the_response_and_on_stderr(capsys, extra, n, max_tokens, words):
    _, client = app()
    r = client.post("/v1/chat/completions", json=ask(n=n, max_tokens=max_tokens, dp=extra))
    assert r.status_code == 200, r.text
    warnings = r.json()["dp"]["warnings"]
    assert any(words in w for w in warnings), warnings
    assert words in capsys.readouterr().err
    ok = client.post("/v1/chat/completions", json=ask(n=8, dp={"policy": "deepprune", "K2": 2}))
    assert ok.json()["dp"]["warnings"] == []


def test_per_request_settings_of_every_policy_reach_it():
    _, client = app()
    for extra, key in (({"policy": "deepconf-low", "warmup": 3, "conf_window": 5}, "conf_window"),
                       ({"policy": "esc", "window": 2}, "window"), ({"policy": "adaptive", "wave": 3}, "wave"),
                       ({"policy": "adaptive", "confidence": 0.8}, "confidence")):
        r = client.post("/v1/chat/completions", json=ask(dp=extra))
        assert r.status_code == 200, r.text
        assert r.json()["dp"]["params"][key] == extra[key]


def test_a_judge_trained_on_the_question_is_warned_about(capsys):
    served, client = app()
    judge = load_judge("jaccard")
    judge.meta = {"trained_on": {"runs": ["x"], "problem_digests": [problem_digest("What is 2 + 3?")]}}
    served.judges["jaccard"] = judge
    r = client.post("/v1/chat/completions", json=ask())
    assert any("trained on this request's question" in w for w in r.json()["dp"]["warnings"])
    assert "in-sample" in capsys.readouterr().err
    r = client.post("/v1/chat/completions", json=ask("What is 4 + 4?"))
    assert r.json()["dp"]["warnings"] == []


@pytest.mark.parametrize("extra, param, words", [
    ({"K": 12000, "K1": 12000}, "dp.K", "<= 64"),
    ({"K": 10**9}, "dp.K", "<= 64"),
    ({"K2": 65}, "dp.K2", "<= 64"),
    ({"conf_window": 10**7, "policy": "deepconf-low"}, "dp.conf_window", "<= 4096"),
    ({"tau": "high"}, "dp.tau", "must be a number"),
    ({"K": 2.5}, "dp.K", "must be an integer"),
    ({"final": 3}, "dp.final", "must be a string"),
    ({"kind": [1]}, "dp.kind", "unknown answer kind"),
])
def test_per_request_settings_are_bounded_and_typed(extra, param, words):
    _, client = app()
    r = client.post("/v1/chat/completions", json=ask(dp=extra))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"]
    assert "not supported between" not in err["message"] and "Error" not in err["message"]


def test_a_deeply_nested_body_is_400_and_a_system_message_is_accepted():
    served, client = app()
    deep = "[" * 100_000 + "]" * 100_000
    r = client.post("/v1/chat/completions", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "nested" in r.json()["error"]["message"]
    chat = {"model": MODEL, "messages": [{"role": "system", "content": "You are a helpful assistant."},
                                         {"role": "user", "content": "What is 1 + 1?"},
                                         {"role": "assistant", "content": "2"},
                                         {"role": "user", "content": "What is 2 + 3?"}]}
    r = client.post("/v1/chat/completions", json=chat)
    assert r.status_code == 200, r.text
    assert served.answered == 1
    for bad in ([{"role": "system", "content": "only a system message"}], [{"role": "wizard", "content": "x"}]):
        assert client.post("/v1/chat/completions", json={"messages": bad}).status_code == 400


def test_an_api_key_guards_the_v1_routes_and_health_stays_open():
    _, client = app(api_key="sekret")
    r = client.post("/v1/chat/completions", json=ask())
    assert r.status_code == 401
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/health").status_code == 200
    good = {"Authorization": "Bearer sekret"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.post("/v1/chat/completions", json=ask(), headers=good).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=client,
                      max_retries=0).models.list()
    ok = openai.OpenAI(base_url="http://testserver/v1", api_key="sekret", http_client=client, max_retries=0)
    assert [m.id for m in ok.models.list()] == [MODEL]


def test_stream_true_is_answered_as_openai_chunks_with_the_official_client():
    served, client = app(api_key="k")
    oc = openai.OpenAI(base_url="http://testserver/v1", api_key="k", http_client=client, max_retries=0)
    chunks = list(oc.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "What is 2 + 3?"}],
                                             seed=4, stream=True, extra_body={"dp": {"policy": "cons"}}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1].model_dump()
    assert last["choices"][0]["finish_reason"] in ("stop", "length") and last["usage"]["completion_tokens"] > 0
    assert last["dp"]["answer"] == "5" and last["dp"]["policy"] == "cons"
    plain = client.post("/v1/chat/completions", json=ask(seed=4, dp={"policy": "cons"}),
                        headers={"Authorization": "Bearer k"}).json()
    assert text == plain["choices"][0]["message"]["content"]  # the same chosen trace
    assert {k: last["usage"][k] for k in plain["usage"]} == plain["usage"] and served.answered == 2
    raw = client.post("/v1/chat/completions", json=ask(stream=True, n=0), headers={"Authorization": "Bearer k"})
    assert raw.status_code == 400  # a bad request is refused before the stream starts
    body = client.post("/v1/chat/completions", json=ask(stream=True), headers={"Authorization": "Bearer k"}).text
    events = [e for e in body.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and all(json.loads(e[6:])["object"] == "chat.completion.chunk"
                                                for e in events[:-1])


def test_a_failure_after_the_stream_began_ends_it_with_an_error_event():
    class Broken(FakeEngine):
        async def stream(self, *a, **k):
            raise RuntimeError("boom")
            yield  # pragma: no cover

    served, client = app(engine=Broken())
    body = client.post("/v1/chat/completions", json=ask(stream=True)).text
    events = [e[6:] for e in body.split("\n\n") if e.startswith("data: ")]
    assert json.loads(events[-2])["error"]["message"].startswith("RuntimeError: boom") and events[-1] == "[DONE]"
    assert served.in_flight == 0


def test_fake_engine_traces_depend_on_the_seed_only():
    e = FakeEngine()
    assert e.trace_ids(1) == e.trace_ids(1) and np.all([len(e.trace_ids(s)) > 10 for s in range(5)])
