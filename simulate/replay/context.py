"""ProblemContext: one cached problem as the arrays a policy reads.

Built once per (run, truncation rule, judge): trace lengths, answer classes, which
classes are correct, each trace's decision point under the rule, DeepConf token
confidences when the run has them, and a lazily scored judge matrix. A policy
sees only this; it never touches the cache or an engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dp.cache.live import read_live_orders
from dp.cache.offsets import prefixes_at
from dp.cache.store import Cache, ProblemTraces
from dp.errors import DPError
from dp.judge.base import Judge
from dp.judge.prefix_reader import read_prefixes
from dp.judge.truncation import TruncationRule
from dp.simulate.replay.scores import PairScores


@dataclass
class ProblemContext:
    """Everything a policy may know about one problem's N traces (positions 0..N-1)."""

    problem_id: str
    trace_ids: np.ndarray  # (N,) int64 cache trace ids
    lengths: np.ndarray  # (N,) int64 tokens of each full trace
    classes: np.ndarray  # (N,) int64 final answer class, -1 = no answer
    correct: np.ndarray  # (N,) bool, the trace's answer is correct
    decision: np.ndarray  # (N,) int64 tokens at the decision point (<= lengths)
    scores: PairScores | None = None  # judge scores, None when no judge is needed
    confidence: list[np.ndarray] | None = None  # N arrays (n_tokens,) DeepConf token confidence
    texts_at: Callable[[np.ndarray, np.ndarray], list[str]] | None = field(default=None, repr=False)
    # (positions, n_tokens) -> each trace's text up to that token (read by offsets), for Slim-SC
    live_order: np.ndarray | None = None  # (N,) positions in the arrival order recorded live (dp live / dp serve)
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.lengths.size)

    def memo(self, key, fn):
        """Per-context memo for derived arrays (e.g. DeepConf trace scores) shared by replays."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]


def build_contexts(cache: Cache, run: str, rule: TruncationRule, judge: Judge | None = None,
                   confidence: bool = False, limit: int | None = None) -> list[ProblemContext]:
    """Contexts for every problem of `run` (the first `limit` problems if given).

    `judge` may be a `dp.judge.crossfit.FoldJudges`: each problem is scored by its fold's judge."""
    problems: list[ProblemTraces] = cache.load_run(run)[:limit]
    if not problems:
        raise DPError(f"run '{run}' has no traces")
    live_orders = read_live_orders(cache, run)
    out = []
    for p in problems:  # one problem at a time: texts are read by offsets, never whole
        dec, prefixes = read_prefixes(cache, p.trace_ids, p.lengths, p.classes, rule)
        conf = cache.token_arrays(p.trace_ids, "confidence") if confidence else None
        if conf is not None and any(c.size and np.isnan(c).any() for c in conf):
            raise DPError(f"run '{run}' has no token confidences (imported text?); DeepConf needs log-probs")
        scores = None
        if judge is not None:
            j = judge.for_problem(p.problem.problem_id) if hasattr(judge, "for_problem") else judge
            scores = PairScores(j, rule, prefixes, cache)
        out.append(ProblemContext(
            problem_id=p.problem.problem_id, trace_ids=p.trace_ids, lengths=p.lengths.astype(np.int64),
            classes=p.classes.astype(np.int64), correct=p.correct.copy(), decision=dec,
            scores=scores, confidence=conf, live_order=_positions(live_orders.get(p.problem.problem_id), p.index),
            texts_at=lambda pos, k, ids=p.trace_ids: prefixes_at(cache, ids[np.asarray(pos)], k),
        ))
    return out


def _positions(order: np.ndarray | None, index: np.ndarray) -> np.ndarray | None:
    """A live order of trace indices as positions 0..N-1 (None unless it covers every trace)."""
    if order is None or len(order) != len(index) or set(order.tolist()) != set(index.tolist()):
        return None
    pos = {int(t): i for i, t in enumerate(index)}
    return np.array([pos[int(t)] for t in order], dtype=np.int64)
