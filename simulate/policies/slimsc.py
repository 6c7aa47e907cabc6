"""Slim-SC (Hong et al. 2025), reconstructed: prune a trace whose latest thought
segment is too similar to that of a trace still running.

Every trace is started. At each checkpoint c (after c x `every` tokens) the
traces still running past it (length > c x every, not pruned) take part in
arrival order: a trace's segment (the text of tokens (c-1) x every .. c x every)
is embedded with the shipped MiniLM; if its cosine with the segment of any
trace already kept at this checkpoint exceeds `similarity`, the trace is pruned
there (it pays c x every tokens and does not vote); otherwise it is kept. The
survivors run to the end and vote. (The paper cuts thoughts at reasoning-step
delimiters and checks on a timer; fixed token checkpoints make the replay exact.)

One rule, `decide`, serves the replay (`plan`, R orders at once, the same order
at every checkpoint) and the live runner (`dp.simulate.live.slimsc`, R = 1, each
checkpoint in the order traces reach it). Segment texts come from the context's
reader (`ProblemContext.texts_at`); embeddings are memoised per context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dp.errors import DPError
from dp.simulate.policies.base import Plan


@dataclass(frozen=True)
class SlimSCParams:
    similarity: float = 0.98  # prune above this cosine similarity of segments
    every: int = 32  # tokens between checkpoints

    def __post_init__(self):
        if not -1.0 <= self.similarity <= 1.0:
            raise DPError(f"similarity must be in [-1, 1], got {self.similarity}")
        if self.every < 1:
            raise DPError(f"every must be >= 1, got {self.every}")


@dataclass
class SlimState:
    kept: dict  # checkpoint -> (R, N) bool kept there
    pruned_at: np.ndarray  # (R, N) int64 tokens at the pruning checkpoint, 0 = not pruned
    comparisons: np.ndarray  # (R,) int64 segment similarities looked at


def segment_bounds(lengths: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(trace, checkpoint) of every segment that is decided on: checkpoints c >= 1 with c * every < length."""
    lengths = np.asarray(lengths, dtype=np.int64)
    per = np.maximum((lengths - 1) // every, 0)  # checkpoints strictly inside each trace
    t = np.repeat(np.arange(lengths.size), per)
    c = np.concatenate([np.arange(1, k + 1) for k in per]) if per.sum() else np.zeros(0, np.int64)
    return t, c.astype(np.int64)


class SlimSC:
    name = "slimsc"
    needs_judge = False
    needs_confidence = False
    needs_embedder = True

    def __init__(self, params: SlimSCParams | None = None, embedder=None, **kw):
        self.params = params or SlimSCParams(**kw)
        self.embedder = embedder

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.embedder is None:
            from dp.judge.embedding import EmbeddingJudge

            self.embedder = EmbeddingJudge()
        return self.embedder.embed(texts)

    def begin(self, n: int, replicas: int) -> SlimState:
        return SlimState(kept={}, pruned_at=np.zeros((replicas, n), dtype=np.int64),
                         comparisons=np.zeros(replicas, dtype=np.int64))

    def decide(self, s: SlimState, c: int, traces: np.ndarray, sims: np.ndarray,
               active: np.ndarray | None = None) -> np.ndarray:
        """Traces (R,) reach checkpoint c with cosines `sims` (R, N) to every trace's segment
        there (rows where `active` is False are skipped); -> (R,) bool pruned. Only traces
        already kept at c count."""
        R, N = s.pruned_at.shape
        active = np.ones(R, dtype=bool) if active is None else active
        kept = s.kept.setdefault(c, np.zeros((R, N), dtype=bool))
        s.comparisons += np.where(active, kept.sum(axis=1), 0)
        best = np.where(kept, sims, -np.inf).max(axis=1)
        prune = active & (best > self.params.similarity)
        keep = active & ~prune
        rows = np.arange(R)
        s.pruned_at[rows[prune], traces[prune]] = c * self.params.every
        kept[rows[keep], traces[keep]] = True
        return prune

    def segments(self, ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(trace, checkpoint, unit embedding) of every segment of a cached problem (memoised)."""
        every = self.params.every

        def build():
            if ctx.texts_at is None:
                raise DPError("slimsc needs the traces' texts (a context built from the cache)")
            t, c = segment_bounds(ctx.lengths, every)
            ends = ctx.texts_at(np.concatenate([t, t]), np.concatenate([c * every, (c - 1) * every]))
            texts = [a[len(b):] for a, b in zip(ends[: t.size], ends[t.size:], strict=True)]
            return t, c, self.embed(texts)

        return ctx.memo(("slimsc-segments", every), build)

    def plan(self, ctx, orders: np.ndarray, rng) -> Plan:
        R, N = orders.shape
        t_of, c_of, emb = self.segments(ctx)
        state = self.begin(N, R)
        for c in np.unique(c_of):
            at = np.flatnonzero(c_of == c)
            vec = np.zeros((N, emb.shape[1] if emb.size else 1), dtype=np.float32)
            vec[t_of[at]] = emb[at]
            sims = vec @ vec.T  # (N, N) cosines of the segments at c
            part = np.zeros(N, dtype=bool)
            part[t_of[at]] = True  # traces still running past c
            rows = np.arange(R)
            for k in range(N):
                tr = orders[:, k]
                alive = part[tr] & (state.pruned_at[rows, tr] == 0)
                if alive.any():
                    self.decide(state, int(c), tr, sims[tr], alive)
        voters = state.pruned_at == 0
        return Plan(stop_at=np.where(voters, ctx.lengths[None, :], state.pruned_at), voters=voters,
                    judge_pairs=state.comparisons)
