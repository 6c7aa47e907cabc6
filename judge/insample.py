"""Which problems a trained judge has seen, and whether a run's problems are among them.

A trainable judge records, in its judge.json `trained_on`, the runs, the problem ids
and a digest of each problem's question (`problem_digest`), so a judge can be
recognised as in-sample on any cache that holds the same questions, whatever the
run is called. `in_sample` answers for one run; callers warn on stderr and mark
their output (`judge_in_sample`). Judges that were not trained (oracle, random,
jaccard, embedding, zero-shot LLM) are never in-sample. Nothing here trains or scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def problem_digest(question: str) -> str:
    """10 hex digits identifying a question's text (whitespace-normalised)."""
    return hashlib.blake2b(" ".join(str(question).split()).encode(), digest_size=5).hexdigest()


def trained_on(judge) -> dict | None:
    """The judge's `trained_on` record, or None for a judge that was not trained."""
    meta = getattr(judge, "meta", None) or {}
    rec = meta.get("trained_on")
    return rec if isinstance(rec, dict) else None


def in_sample(judge, run: str, questions: Iterable[str]) -> bool:
    """True when `judge` was trained on any of these questions (or, for judge files that
    predate question digests, on a run of this name)."""
    rec = trained_on(judge)
    if rec is None:
        return False
    digests = rec.get("problem_digests")
    if digests is None:
        return run in rec.get("runs", [])
    seen = set(digests)
    return any(problem_digest(q) in seen for q in questions)


def message(judge_name: str, run: str) -> str:
    """The in-sample warning (callers print it after `warning: ` or a policy name)."""
    return (f"judge {judge_name} was trained on problems of run '{run}': its scores there are "
            f"in-sample (use --crossfit K, or a judge trained on other runs)")
