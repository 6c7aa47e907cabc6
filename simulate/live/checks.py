"""Checks shared by `dp live` and `dp serve` before and after a policy runs live.

- `setting_error`: a policy setting given by a client (the `dp` field of a served
  request), checked for its type and for a bound that the request can use (counts
  of traces <= the server's largest n, token counts <= the context length), so a
  request can neither crash the policy nor make it allocate without bound.
- `prune_warnings`: settings under which the policy cannot prune (or prunes
  nothing but the vote), known before any trace runs, in words; the same cases
  `dp simulate` warns about (`dp.simulate.replay.sweep`), for one request's n and max_tokens.
- `measured_warnings`: after a prefix policy ran, a decision point that covers
  most of each trace (`prefix_share` of the finished traces, whose length is known).
- `in_sample_warning`: a trained judge that saw these questions.

Nothing here runs a policy, an engine or a judge.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dp.judge.insample import in_sample, message

COUNTS = ("K", "K1", "K2", "K3", "keep", "warmup", "window", "wave", "m")  # numbers of traces or clusters
TOKENS = ("conf_window", "every")  # numbers of tokens
CHOICES = ("final", "when_full")


def knob_types() -> dict[str, type]:
    """Every policy setting a request may give, with its type (int, float or str)."""
    from dp.simulate.policies.registry import POLICIES

    out: dict[str, type] = {}
    for _, params_cls, fixed, _ in POLICIES.values():
        for f in dataclasses.fields(params_cls) if params_cls is not None else ():
            if f.name not in fixed and f.name != "accounting":
                t = f.type if isinstance(f.type, str) else f.type.__name__
                out[f.name] = {"int": int, "float": float, "str": str}[t]
    return out


def setting_error(key: str, value, max_n: int, max_tokens: int) -> str | None:
    """Why `value` is not a usable setting `key` (None when it is); no Python internals in the message."""
    kind = knob_types().get(key)
    if kind is None:
        return f"unknown setting '{key}'"
    if kind is str:
        return None if isinstance(value, str) else f"'{key}' must be a string, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
        return f"'{key}' must be {'an integer' if kind is int else 'a number'}, got {value!r}"
    if kind is float and not math.isfinite(value):
        return f"'{key}' must be a finite number, got {value!r}"
    if key in COUNTS and value > max_n:
        return f"'{key}' must be <= {max_n} (the most traces a request can have), got {value}"
    if key in TOKENS and value > max_tokens:
        return f"'{key}' must be <= {max_tokens} (tokens a trace can have), got {value}"
    return None


def prune_warnings(policy, n: int, max_tokens: int, rule) -> list[str]:
    """Settings under which `policy` cannot prune N = n traces of at most `max_tokens` tokens."""
    from dp.simulate.policies.base import PrefixPolicy

    p, name, out = getattr(policy, "params", None), policy.name, []
    if isinstance(policy, PrefixPolicy) and policy.name != "cons" and rule is not None:
        if str(rule.kind.value) == "tokens" and rule.k >= max_tokens:
            out.append(f"{name}: the prefix rule {rule} covers the whole trace (max_tokens {max_tokens}): "
                       "the decision comes when the traces have ended, nothing is left to prune")
    if p is None:
        return out
    if getattr(p, "final", None) == "largest" and n <= p.K2:
        out.append(f"{name}: N = {n} <= K2 = {p.K2}: the largest cluster finishes whole, only other clusters "
                   "are pruned")
    if hasattr(p, "keep") and n <= p.keep:
        out.append(f"{name}: N = {n} <= keep = {p.keep}: every trace finishes, nothing is pruned")
    if hasattr(p, "warmup"):
        if p.warmup >= n:
            out.append(f"{name}: warm-up {p.warmup} >= N = {n}: every trace is a warm-up trace and runs to the "
                       "end, nothing is saved (low-scoring ones only lose their vote)")
        if p.conf_window > max_tokens:
            out.append(f"{name}: conf_window {p.conf_window} > max_tokens {max_tokens}: a trace is checked only "
                       "when it has ended, so no trace is stopped early (low-confidence ones only lose their vote)")
    if name == "esc" and p.window >= n:
        out.append(f"{name}: window {p.window} >= N = {n}: the first wave starts every trace, nothing is saved")
    if name == "adaptive" and p.wave >= n:
        out.append(f"{name}: wave {p.wave} >= N = {n}: the first wave starts every trace, nothing is saved")
    if hasattr(p, "every") and p.every >= max_tokens:
        out.append(f"{name}: every {p.every} >= max_tokens {max_tokens}: no trace reaches a checkpoint, "
                   "nothing is pruned")
    return out


def prefix_share(decision: np.ndarray, lengths: np.ndarray) -> float | None:
    """Mean decision point / mean trace length (the replay's `prefix_share`), None without tokens."""
    total = int(np.sum(lengths))
    return float(np.sum(decision)) / total if total else None


def measured_warnings(policy, lives, rule) -> list[str]:
    """After a live prefix policy ran on `lives` (ProblemLive): the decision point covered most of
    the finished traces."""
    from dp.simulate.policies.base import PrefixPolicy

    if not isinstance(policy, PrefixPolicy) or policy.name == "cons" or not any(lv.finished.any() for lv in lives):
        return []
    share = prefix_share(np.concatenate([lv.decision_token[lv.finished] for lv in lives]),
                         np.concatenate([lv.tokens[lv.finished] for lv in lives]))
    if share is None or share <= 0.5:
        return []
    return [f"{policy.name}: the prefix rule {rule} covers {100 * share:.0f}% of the finished traces "
            f"(prefix_share {share:.2f}): little is left to prune; use a shorter rule"]


def in_sample_warning(judge, run: str, questions, what: str | None = None) -> str | None:
    """The in-sample warning when `judge` was trained on any of `questions` (or on run `run`), else None;
    `what` names the questions in the message (default: the problems of the run)."""
    if judge is None or not in_sample(judge, run, questions):
        return None
    name = getattr(judge, "name", "?")
    if what is None:
        return message(name, run)
    return f"judge {name} was trained on {what}: its scores there are in-sample (use a judge trained on other questions)"
