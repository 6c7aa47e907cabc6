"""`dp serve`'s request schema and vote without an engine: validation, defaults, seeds, the answer."""

from __future__ import annotations

import numpy as np
import pytest

from dp.simulate.serve.request import ServeError, ServerDefaults, parse_request, trace_seeds, vote
from dp.types import AnswerKind, Problem

D = ServerDefaults(model="smollm2-135m", n=8, max_tokens=32, policy="deepprune", params={"tau": 0.5, "K2": 3},
                   judge="jaccard", truncate="tokens:8", seed=7)
JUDGES = {"jaccard", "features", "random"}


def body(**kw):
    return {"model": "smollm2-135m", "messages": [{"role": "user", "content": "What is 2 + 3?"}], **kw}


def test_defaults_fill_what_the_request_does_not_say():
    r = parse_request(body(), D, "chatcmpl-a", JUDGES)
    assert (r.spec.n, r.spec.max_tokens, r.spec.temperature, r.spec.top_p) == (8, 32, 0.7, 0.95)
    assert r.policy == "deepprune" and r.params["tau"] == 0.5 and r.params["K2"] == 3
    assert r.judge == "jaccard" and r.truncate == "tokens:8" and r.mode == "keep"
    assert r.problem.gold is None and r.problem.question == "What is 2 + 3?" and r.problem.problem_id == "chatcmpl-a"
    assert not r.seed_given and len(r.seeds) == 8 and len(set(r.seeds)) == 8


def test_per_request_knobs_override_the_server():
    r = parse_request(body(n=4, max_tokens=16, temperature=0.2, top_p=0.5, seed=11,
                           dp={"policy": "cons", "truncate": "words:3", "mode": "resume", "kind": "number"}),
                      D, "chatcmpl-b", JUDGES)
    assert (r.spec.n, r.spec.max_tokens, r.spec.temperature, r.spec.top_p, r.spec.seed) == (4, 16, 0.2, 0.5, 11)
    assert r.policy == "cons" and r.judge is None and r.truncate == "words:3" and r.mode == "resume"
    assert r.problem.kind == AnswerKind.NUMBER and r.seed_given
    r2 = parse_request(body(dp={"tau": 0.9, "judge": "features"}, max_completion_tokens=5), D, "c", JUDGES)
    assert r2.params["tau"] == 0.9 and r2.params["K2"] == 3 and r2.judge == "features" and r2.spec.max_tokens == 5


def test_a_request_seed_fixes_the_trace_seeds_whatever_the_request_id():
    a = parse_request(body(seed=5), D, "chatcmpl-1", JUDGES)
    b = parse_request(body(seed=5), D, "chatcmpl-2", JUDGES)
    c = parse_request(body(), D, "chatcmpl-1", JUDGES)
    d = parse_request(body(), D, "chatcmpl-2", JUDGES)
    assert a.seeds == b.seeds == trace_seeds(5, 8)
    assert c.seeds != d.seeds  # no seed: derived from the server seed and the request id (recorded)
    assert trace_seeds(5, 3) == trace_seeds(5, 8)[:3]


@pytest.mark.parametrize("b, status, param", [
    ([1, 2], 400, None),
    ({"messages": []}, 400, "messages"),
    (body(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]), 400, "messages"),
    (body(messages=[{"role": "user", "content": "  "}]), 400, "messages"),
    (body(n=0), 400, "n"),
    (body(n=65), 400, "n"),
    (body(n=2.5), 400, "n"),
    (body(temperature=-1), 400, "temperature"),
    (body(top_p=0), 400, "top_p"),
    (body(max_tokens="many"), 400, "max_tokens"),
    (body(seed=True), 400, "seed"),
    (body(tools=[]), 400, "tools"),
    (body(stream=True), 400, "stream"),
    (body(dp={"policy": "nope"}), 400, "dp.policy"),
    (body(dp={"policy": "deepprune-oracle"}), 400, "dp.policy"),
    (body(dp={"policy": "deepprune-oracle"}), 400, "dp.policy"),
    (body(dp={"judge": "oracle"}), 400, "dp.judge"),
    (body(dp={"judge": "/etc"}), 400, "dp.judge"),
    (body(dp={"tau": 1.5}), 400, "dp"),
    (body(dp={"truncate": "lines:3"}), 400, "dp.truncate"),
    (body(dp={"mode": "fast"}), 400, "dp.mode"),
    (body(dp={"speed": 1}), 400, "dp.speed"),
    (body(dp={"kind": "choice"}), 400, "dp.kind"),
    (body(dp=3), 400, "dp"),
    (body(model="gpt-4o"), 404, "model"),
])
def test_bad_requests_are_openai_errors_with_the_right_status(b, status, param):
    with pytest.raises(ServeError) as e:
        parse_request(b, D, "chatcmpl-x", JUDGES)
    assert e.value.status == status and e.value.param == param
    err = e.value.body()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"] and "\n" not in err["message"]
    assert err["type"] == "invalid_request_error"


def test_cons_needs_no_judge_so_any_judge_name_is_ignored():
    r = parse_request(body(dp={"policy": "cons", "judge": "whatever"}), D, "c", JUDGES)
    assert r.judge is None


def test_vote_without_gold_counts_finished_traces_and_breaks_ties_by_arrival():
    p = Problem("serve", "q", "2 + 3?", None)
    texts = ["so \\boxed{5}", "\\boxed{6}", "it is \\boxed{5.0}", "\\boxed{6}", "\\boxed{7} but pruned"]
    finished = np.array([True, True, True, True, False])
    v = vote(p, texts, finished, arrival=[3, 1, 0, 2, 4], weights=None)
    # 5 and 6 tie 2-2; 6's first voter (trace 3) arrived first
    assert v.answer == "6" and v.chosen == 3 and v.votes == {"6": 2, "5": 2}
    v = vote(p, texts, finished, arrival=[0, 1, 2, 3, 4], weights=None)
    assert v.answer == "5" and v.chosen == 0
    none = vote(p, ["no answer", "still none"], np.array([True, False]), [1, 0], None)
    assert none.answer is None and none.chosen == 0 and none.votes == {}
    assert vote(p, ["x"], np.array([False]), [0], None).chosen == -1


def test_weighted_vote_follows_the_policy_weights():
    p = Problem("serve", "q", "?", None)
    texts = ["\\boxed{1}", "\\boxed{1}", "\\boxed{2}"]
    v = vote(p, texts, np.array([True, True, True]), [0, 1, 2], np.array([0.2, 0.2, 1.0]))
    assert v.answer == "2" and v.chosen == 2 and v.votes == {"1": 0.4, "2": 1}
