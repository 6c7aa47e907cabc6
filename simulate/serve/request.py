"""`dp serve`'s request and response: the OpenAI chat-completion schema, validated.

`parse_request` turns a decoded JSON body into a frozen `ServeRequest` (the
question as a `Problem` without a gold answer, the `SamplingSpec`, the policy
name and settings, judge, truncation rule, live mode, per-trace seeds) or raises
`ServeError`, which carries the HTTP status and renders the OpenAI error shape.
`vote` picks the answer of a finished live problem and `completion` builds the
response body. Nothing here starts an engine, opens a cache or runs a policy.

Conventions: `n` is the number of parallel traces (one choice comes back: a
finished trace that voted for the winning answer); per-request policy knobs go in
the extra field `"dp"`; `usage.completion_tokens` counts every token really
generated over all traces; the prompt is counted once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from dp.answers import extract_answer, group_answers
from dp.errors import DPError
from dp.seeds import derive
from dp.types import AnswerKind, Problem
from dp.votes import arrival_ranks, majority

TOP_LEVEL = {"model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed",
             "n", "stream", "dp", "user"}
POLICY_KNOBS = {"tau", "K", "K1", "K2", "K3", "final", "when_full", "keep"}
DP_KEYS = {"policy", "judge", "truncate", "mode", "kind", *POLICY_KNOBS}
NO_JUDGE_LIVE = {"oracle"}  # judges that read final answers: no live form


class ServeError(Exception):
    """An error answered in the OpenAI error shape with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, " ".join(str(message).split()), param, code

    @property
    def kind(self) -> str:
        return {400: "invalid_request_error", 404: "invalid_request_error", 429: "rate_limit_exceeded",
                503: "service_unavailable"}.get(self.status, "server_error")

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ServerDefaults:
    """What a request does not say: the server's command-line settings."""

    model: str = "smollm2-135m"
    n: int = 16
    max_n: int = 64
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    policy: str = "deepprune"
    params: dict = dataclasses.field(default_factory=dict)  # tau, K, ... given on the command line
    judge: str = "features"
    truncate: str = "words:25"
    mode: str = "keep"
    seed: int = 0


@dataclass(frozen=True)
class ServeRequest:
    """One validated chat-completion request."""

    request_id: str
    created: int  # unix seconds
    problem: Problem  # gold None: served questions have no known answer
    spec: object  # dp.generate.sampling.SamplingSpec (seed = the request seed)
    seeds: tuple[int, ...]  # (n,) per-trace sampling seeds, derived from the request seed
    policy: str
    params: dict
    judge: str
    truncate: str
    mode: str
    seed: int  # the request seed (given, or derived from the server seed and the request id)
    seed_given: bool


def new_request_id() -> str:
    """A request id that sorts by arrival time (it is also the recorded problem id)."""
    import secrets

    return f"chatcmpl-{time.time_ns():x}{secrets.token_hex(4)}"


def trace_seeds(seed: int, n: int) -> tuple[int, ...]:
    """The sampling seed of each of the n traces of a request seeded with `seed`."""
    return tuple(derive(seed, "serve-trace", i) for i in range(n))


def _question(messages) -> str:
    if not isinstance(messages, list) or not messages:
        raise ServeError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    if len(messages) != 1 or not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        raise ServeError(400, "dp serve answers one question: 'messages' must be exactly one message with role "
                              "'user' (it is asked with dp's one-shot boxed-answer prompt; system messages and "
                              "earlier turns are not supported)", "messages")
    content = messages[0].get("content")
    if isinstance(content, list):  # content parts: text only
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise ServeError(400, "only text content parts are supported", "messages")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str) or not content.strip():
        raise ServeError(400, "the user message needs a non-empty text 'content'", "messages")
    return content


def _number(body: dict, key: str, default, kind=float, low=None, high=None, low_open=False):
    v = body.get(key)
    if v is None:
        return default
    ok_type = isinstance(v, int) if kind is int else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok_type:
        raise ServeError(400, f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {v!r}", key)
    if (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
        raise ServeError(400, f"'{key}' must be in {rng}, got {v}", key)
    return kind(v)


def parse_request(body, defaults: ServerDefaults, request_id: str | None = None,
                  known_judges: set[str] | None = None) -> ServeRequest:
    """A `ServeRequest` from a decoded JSON body, or a ServeError (400 / 404) naming the field."""
    from dp.generate.sampling import SamplingSpec
    from dp.judge.truncation import TruncationRule
    from dp.simulate.policies.registry import POLICIES, make_policy

    if not isinstance(body, dict):
        raise ServeError(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - TOP_LEVEL)
    if unknown:
        raise ServeError(400, f"unsupported field '{unknown[0]}' (supported: {', '.join(sorted(TOP_LEVEL))})",
                         unknown[0])
    if body.get("stream"):
        raise ServeError(400, "stream: true is not supported by dp serve; the answer is known only once the "
                              "traces have voted", "stream")
    if "model" in body and body["model"] != defaults.model:
        raise ServeError(404, f"model '{body['model']}' is not served here (this server: '{defaults.model}')",
                         "model", "model_not_found")
    question = _question(body.get("messages"))
    n = _number(body, "n", defaults.n, int, 1, defaults.max_n)
    max_tokens = _number(body, "max_tokens", None, int, 1)
    max_tokens = _number(body, "max_completion_tokens", max_tokens, int, 1) or defaults.max_tokens
    temperature = _number(body, "temperature", defaults.temperature, float, 0, 2)
    top_p = _number(body, "top_p", defaults.top_p, float, 0, 1, low_open=True)
    extra = body.get("dp") or {}
    if not isinstance(extra, dict):
        raise ServeError(400, "'dp' must be an object of policy settings", "dp")
    bad = sorted(set(extra) - DP_KEYS)
    if bad:
        raise ServeError(400, f"unknown setting 'dp.{bad[0]}' (known: {', '.join(sorted(DP_KEYS))})", f"dp.{bad[0]}")
    policy = extra.get("policy", defaults.policy)
    if not isinstance(policy, str) or policy not in POLICIES:
        raise ServeError(400, f"unknown policy {policy!r}; known: {', '.join(sorted(POLICIES))}", "dp.policy")
    params = {**defaults.params, **{k: v for k, v in extra.items() if k in POLICY_KNOBS}}
    mode = extra.get("mode", defaults.mode)
    if mode not in ("keep", "resume"):
        raise ServeError(400, f"unknown mode {mode!r}; known: keep, resume", "dp.mode")
    try:
        built = make_policy(policy, **params, accounting="concurrent" if mode == "keep" else "paper")
    except (DPError, TypeError, ValueError) as e:
        raise ServeError(400, f"bad policy settings: {e}", "dp") from None
    if not live_policy(built):
        raise ServeError(400, f"policy '{policy}' has no live form (served: {', '.join(live_policies())})",
                         "dp.policy")
    judge = extra.get("judge", defaults.judge)
    if built.needs_judge and (not isinstance(judge, str) or judge not in (known_judges or {defaults.judge})):
        raise ServeError(400, f"unknown judge {judge!r}; known: {', '.join(sorted(known_judges or {defaults.judge}))}",
                         "dp.judge")
    truncate = extra.get("truncate", defaults.truncate)
    try:
        truncate = str(TruncationRule.parse(str(truncate)))
    except DPError as e:
        raise ServeError(400, str(e), "dp.truncate") from None
    try:
        kind = AnswerKind(extra.get("kind", AnswerKind.EXPRESSION.value))
    except ValueError:
        raise ServeError(400, f"unknown answer kind {extra.get('kind')!r}; known: "
                              f"{', '.join(k.value for k in AnswerKind if k != AnswerKind.CHOICE)}", "dp.kind") from None
    if kind == AnswerKind.CHOICE:
        raise ServeError(400, "answer kind 'choice' needs choices, which a chat message does not carry", "dp.kind")
    request_id = request_id or new_request_id()
    seed_given = body.get("seed") is not None
    seed = _number(body, "seed", None, int, 0, 2**63 - 1)
    if seed is None:
        seed = derive(defaults.seed, "serve-request", request_id)
    try:
        spec = SamplingSpec(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=int(seed))
    except DPError as e:
        raise ServeError(400, str(e)) from None
    problem = Problem(dataset="serve", problem_id=request_id, question=question, gold=None, kind=kind)
    return ServeRequest(request_id=request_id, created=int(time.time()), problem=problem, spec=spec,
                        seeds=trace_seeds(seed, n), policy=policy, params=dict(built.params_dict),
                        judge=judge if built.needs_judge else None, truncate=truncate, mode=mode, seed=int(seed),
                        seed_given=seed_given)


def live_policy(policy) -> bool:
    """Whether the live runner has a driver for `policy` (every policy but the oracle bound)."""
    from dp.simulate.live.problem import driver_for

    try:
        driver_for(policy)
    except DPError:
        return False
    return True


def live_policies() -> list[str]:
    from dp.simulate.policies.registry import POLICIES, make_policy

    return sorted(name for name in POLICIES if live_policy(make_policy(name)))


@dataclass(frozen=True)
class Vote:
    """The answer of one served request."""

    answer: str | None  # the winning answer as written by its first voter, None when no finished trace answered
    chosen: int  # the trace index whose text is returned (-1: nothing finished)
    votes: dict  # answer -> votes (finished traces; weighted where the policy weights its vote)


def vote(problem: Problem, texts: list[str], finished: np.ndarray, arrival: list[int],
         weights: np.ndarray | None) -> Vote:
    """The live runner's vote (finished traces, ties by arrival) and the trace to answer with:
    the earliest-arrived finished trace of the winning class (or the earliest finished one)."""
    answers = [extract_answer(t, problem.kind) if finished[i] else None for i, t in enumerate(texts)]
    classes = group_answers(answers, problem.kind)
    ranks = arrival_ranks(np.asarray(arrival, dtype=np.int64)[None, :])[0]
    win = majority(classes, ranks, weights)
    order = [t for t in arrival if finished[t]]
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=float)
    votes: dict[str, float] = {}
    names: dict[int, str] = {}
    for t in order:
        c = int(classes[t])
        if c >= 0 and w[t] > 0:
            name = names.setdefault(c, answers[t])
            votes[name] = votes.get(name, 0.0) + float(w[t])
    votes = {k: (int(v) if float(v).is_integer() else v) for k, v in votes.items()}
    if win >= 0:
        chosen = next(t for t in order if classes[t] == win)
        return Vote(names.get(int(win), answers[chosen]), chosen, votes)
    return Vote(None, order[0] if order else -1, votes)


def completion(req: ServeRequest, model: str, text: str, finish_reason: str, prompt_tokens: int,
               completion_tokens: int, dp_info: dict) -> dict:
    """The chat.completion response body (OpenAI schema) with the `dp` field."""
    return {
        "id": req.request_id, "object": "chat.completion", "created": req.created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason, "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
        "system_fingerprint": None,
        "dp": dp_info,
    }
