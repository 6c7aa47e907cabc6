"""Confidence-weighted DeepPrune (this package's own variant; method.md section 4).

DeepPrune's clustering, reservoir samples and finishers are unchanged (it is a
`DeepPrune` with the same settings, same random draws, so on the same orders it
finishes exactly the traces DeepPrune finishes); only the finishers' vote is
weighted, by DeepConf's trace score (lowest group confidence over windows of
`conf_window` tokens, `DeepConf.score`). With `final=representatives-weighted`
the weight is the cluster size times the score. A run without log-probs (no
token confidences in the context; `dp simulate` builds such contexts for runs
without log-probs, `run_has_confidence`) votes as DeepPrune does. An empty trace's
score is NaN; it votes with weight 0.

Replay: the scores come from the context's stored confidences (memoised per
problem). Live (`dp.simulate.live.prefix`): the driver hands the streamed
confidences of the traces to `set_confidence` once they have ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dp.confidence import DEFAULT_WINDOW
from dp.errors import DPError
from dp.simulate.policies.deepconf import DeepConf, DeepConfParams
from dp.simulate.policies.deepprune import ClusterState, DeepPrune, DeepPruneParams


@dataclass(frozen=True)
class ConfDeepPruneParams(DeepPruneParams):
    conf_window: int = DEFAULT_WINDOW  # tokens per confidence group of the trace score

    def __post_init__(self):
        super().__post_init__()
        if int(self.conf_window) < 1:
            raise DPError(f"conf_window must be >= 1, got {self.conf_window}")


def run_has_confidence(cache, run: str) -> bool:
    """Whether a run's traces carry token confidences (log-probs), judged from its first trace."""
    first = cache.load_run(run)[:1]
    if not first or not first[0].trace_ids.size:
        return False
    conf = cache.token_arrays(first[0].trace_ids[:1], "confidence")
    return bool(conf) and conf[0].size > 0 and not np.isnan(conf[0]).any()


class ConfDeepPrune(DeepPrune):
    name = "deepprune-conf"
    needs_confidence = True
    confidence_optional = True  # a run without log-probs replays it as DeepPrune (contexts without them)

    def __init__(self, params: ConfDeepPruneParams | None = None, **kw):
        super().__init__(params or ConfDeepPruneParams(**kw))

    def trace_scores(self, confidence: list[np.ndarray]) -> np.ndarray:
        """(N,) vote weight of each trace: its DeepConf score, 0 where it has no tokens."""
        scorer = DeepConf(DeepConfParams(conf_window=int(self.params.conf_window)))
        s = np.array([scorer.score(np.asarray(c)) for c in confidence], dtype=np.float64)
        return np.nan_to_num(s, nan=0.0)

    def begin_many(self, ctx, replicas: int, rngs, taus) -> ClusterState:
        state = super().begin_many(ctx, replicas, rngs, taus)
        scores = None
        if ctx.confidence is not None:
            scores = ctx.memo(("deepprune-conf", self.params.conf_window), lambda: self.trace_scores(ctx.confidence))
        self.set_confidence(state, scores)
        return state

    @staticmethod
    def set_confidence(state: ClusterState, scores: np.ndarray | None) -> None:
        """The (N,) trace scores the vote is weighted by (None: unweighted, as DeepPrune)."""
        state.trace_score = None if scores is None else np.asarray(scores, dtype=np.float64)

    def weights(self, s: ClusterState) -> np.ndarray | None:
        base = super().weights(s)
        score = getattr(s, "trace_score", None)
        if score is None:
            return base
        w = np.broadcast_to(score, s.assign.shape)
        return w.copy() if base is None else base * w

