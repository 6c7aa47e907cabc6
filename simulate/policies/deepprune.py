"""DeepPrune: online greedy clustering of trace prefixes with a judge (method.md section 3).

For each trace, in arrival order, once its prefix is complete: its similarity to
each cluster is the mean judge score against min(K1, |c|) members sampled from
the cluster (a uniform reservoir sample, kept as the cluster grows). If the best
similarity exceeds tau it joins that cluster (it is pruned); otherwise it opens a
new cluster while fewer than K exist; with K clusters it joins the best one
(`when_full="join"`, the default) or is dropped (`when_full="prune"`).

Final answer (`final`):
- `largest` (the paper): finish min(|largest cluster|, K2) randomly chosen members
  of the largest cluster (ties: the cluster opened first) and vote; if every
  cluster is a singleton, finish K3 random traces and vote.
- `representatives`: finish each cluster's first member and vote over them;
  `representatives-weighted` weights each vote by its cluster's size.

State is batched over R independent replays (arrival orders); the live runner
uses R = 1. Knows nothing about the cache or an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dp.errors import DPError
from dp.simulate.policies.base import Accounting, PrefixPolicy

FINALS = ("largest", "representatives", "representatives-weighted")
WHEN_FULL = ("join", "prune")


@dataclass(frozen=True)
class DeepPruneParams:
    """Settings of DeepPrune. K3 and the `final`/`when_full` variants are (reconstructed)."""

    tau: float = 0.5  # join a cluster when mean judge score > tau; in [0, 1]
    K: int = 32  # max clusters
    K1: int = 10  # members sampled per cluster for the similarity
    K2: int = 20  # traces of the largest cluster finished for the vote
    K3: int = 16  # traces finished when every cluster is a singleton
    final: str = "largest"
    when_full: str = "join"
    accounting: str = "paper"

    def __post_init__(self):
        if not 0.0 <= self.tau <= 1.0:
            raise DPError(f"tau must be in [0, 1], got {self.tau}")
        for name in ("K", "K1", "K2", "K3"):
            if int(getattr(self, name)) < 1:
                raise DPError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.final not in FINALS:
            raise DPError(f"unknown final-answer variant '{self.final}'; known: {', '.join(FINALS)}")
        if self.when_full not in WHEN_FULL:
            raise DPError(f"unknown when_full '{self.when_full}'; known: {', '.join(WHEN_FULL)}")
        Accounting(self.accounting)


@dataclass
class ClusterState:
    """Clusters of R replays over N traces; in a tau sweep, T blocks of R rows (row b * R + r)."""

    rng: np.random.Generator  # the first block's generator (the only one unless taus are batched)
    n_traces: int
    assign: np.ndarray  # (R, N) int64 cluster of each trace, -1 = not seen yet, -2 = dropped
    n_clusters: np.ndarray  # (R,) int64
    size: np.ndarray  # (R, K) int64 members per cluster
    sample: np.ndarray  # (R, K, K1) int64 reservoir of members, -1 = empty slot
    first: np.ndarray  # (R, K) int64 first member of each cluster (its representative)
    pairs: np.ndarray  # (R,) int64 judge evaluations asked for
    scores: object = field(repr=False, default=None)  # PairScores
    tau: np.ndarray | None = None  # (R,) float64 threshold of each row
    rngs: list = field(default_factory=list)  # one generator per block of `block` rows
    block: int = 0  # rows per block
    # [max similarity compared and not joined, min similarity joined] over every decision so
    # far: any tau in [bounds[0], bounds[1]) would have made the same decisions
    bounds: list = field(default_factory=lambda: [-np.inf, np.inf])
    track: bool = False  # keep `bounds` up to date (a probe replay of a tau sweep)

    def draw(self, counts: np.ndarray | None, shape: tuple = ()) -> np.ndarray:
        """Uniforms for the rows of each block in row order: counts[b] of them from block b's
        generator (shape (counts[b],)), or, with counts None, `shape` per block stacked on axis 0."""
        if len(self.rngs) == 1:
            return self.rngs[0].random(int(counts[0]) if counts is not None else shape)
        if counts is None:
            return np.concatenate([g.random(shape) for g in self.rngs], axis=0)
        return np.concatenate([g.random(int(k)) for g, k in zip(self.rngs, counts, strict=True)])


class DeepPrune(PrefixPolicy):
    name = "deepprune"
    needs_judge = True
    matched_controls = True  # replay pairs it with random controls at its own budget

    def __init__(self, params: DeepPruneParams | None = None, **kw):
        self.params = params or DeepPruneParams(**kw)
        self.accounting = Accounting(self.params.accounting)

    def begin(self, ctx, replicas: int, rng: np.random.Generator) -> ClusterState:
        return self.begin_many(ctx, replicas, [rng], [self.params.tau])

    def begin_many(self, ctx, replicas: int, rngs: list[np.random.Generator], taus) -> ClusterState:
        """State for len(taus) blocks of `replicas` rows: block b replays at taus[b] with rngs[b],
        exactly as `begin` with that tau and generator would (rows never interact)."""
        if ctx.scores is None:
            raise DPError("deepprune needs a judge")
        for tau in taus:
            DeepPruneParams(**{**self.params.__dict__, "tau": float(tau)})  # validates every tau
        p = self.params
        rows = replicas * len(taus)
        return ClusterState(
            rng=rngs[0], n_traces=ctx.n,
            assign=np.full((rows, ctx.n), -1, dtype=np.int64),
            n_clusters=np.zeros(rows, dtype=np.int64),
            size=np.zeros((rows, p.K), dtype=np.int64),
            sample=np.full((rows, p.K, p.K1), -1, dtype=np.int64),
            first=np.full((rows, p.K), -1, dtype=np.int64),
            pairs=np.zeros(rows, dtype=np.int64),
            scores=ctx.scores,
            tau=np.repeat(np.asarray(taus, dtype=np.float64), replicas),
            rngs=list(rngs), block=replicas,
        )

    def similarities(self, s: ClusterState, traces: np.ndarray) -> np.ndarray:
        """(R, kmax) mean judge score of each replay's trace against each of its clusters (-inf: none)."""
        kmax = int(s.n_clusters.max())
        vals = s.scores.lookup(traces, s.sample[:, :kmax, :])  # (R, kmax, K1), empty slots 0.0
        count = np.minimum(s.size[:, :kmax], self.params.K1)  # filled slots of each reservoir
        s.pairs += count.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = vals.sum(axis=2) / count
        return np.where(count > 0, sim, -np.inf)

    def on_prefix(self, s: ClusterState, traces: np.ndarray) -> None:
        p = self.params
        traces = np.asarray(traces, dtype=np.int64)
        rows = np.arange(traces.size)
        if s.n_clusters.max() > 0:
            sim = self.similarities(s, traces)
            best = sim.argmax(axis=1)  # first maximum: the earliest-opened cluster wins ties
            best_sim = sim[rows, best]
        else:
            best = np.zeros(traces.size, dtype=np.int64)
            best_sim = np.full(traces.size, -np.inf)
        join = best_sim > s.tau
        if s.track:
            _track(s.bounds, best_sim, join)
        full = ~join & (s.n_clusters >= p.K)
        if p.when_full == "join":
            join |= full
            drop = np.zeros_like(full)
        else:
            drop = full
        new = ~join & ~drop
        cluster = np.where(join, best, s.n_clusters)
        s.assign[rows, traces] = np.where(drop, -2, cluster)
        kept = ~drop
        r, c, t = rows[kept], cluster[kept], traces[kept]
        s.first[r[new[kept]], c[new[kept]]] = t[new[kept]]
        s.n_clusters += new
        s.size[r, c] += 1
        # reservoir sampling: the first K1 members fill the slots, member m replaces a
        # random slot with probability K1 / m, so each slot set is a uniform sample
        m = s.size[r, c]
        counts = kept.reshape(-1, s.block).sum(axis=1)  # kept rows per block, in row order
        slot = np.where(m <= p.K1, m - 1, np.floor(s.draw(counts) * m).astype(np.int64))
        keep = slot < p.K1
        s.sample[r[keep], c[keep], slot[keep]] = t[keep]

    def finish(self, s: ClusterState) -> np.ndarray:
        p = self.params
        R, N = s.assign.shape
        out = np.zeros((R, N), dtype=bool)
        if p.final.startswith("representatives"):
            valid = s.first >= 0
            rr = np.broadcast_to(np.arange(R)[:, None], s.first.shape)
            out[rr[valid], s.first[valid]] = True
            return out
        largest = s.size.argmax(axis=1)  # (R,) first maximum: the earliest-opened wins ties
        singletons = s.size.max(axis=1) <= 1
        noise = s.draw(None, (s.block, N))  # random choice among candidates
        candidates = np.where(singletons[:, None], s.assign >= 0, s.assign == largest[:, None])
        budget = np.where(singletons, p.K3, p.K2)
        ranked = np.argsort(np.where(candidates, noise, np.inf), axis=1)
        take = np.arange(N)[None, :] < np.minimum(budget, candidates.sum(axis=1))[:, None]
        rr = np.broadcast_to(np.arange(R)[:, None], (R, N))
        out[rr[take], ranked[take]] = True
        return out

    def weights(self, s: ClusterState) -> np.ndarray | None:
        if self.params.final != "representatives-weighted":
            return None
        R, N = s.assign.shape
        w = np.zeros((R, N))
        cl = np.where(s.assign >= 0, s.assign, 0)
        w[:] = np.take_along_axis(s.size, cl, axis=1)
        return w

    def pairs(self, s: ClusterState) -> np.ndarray:
        return s.pairs.copy()

    def clusters(self, s: ClusterState) -> np.ndarray:
        """(R, N) cluster of each trace (-2 dropped, -1 not seen): for reports and the live runner."""
        return s.assign.copy()


def _track(bounds: list, best_sim: np.ndarray, join: np.ndarray) -> None:
    """Narrow [highest similarity not joined, lowest joined]: the taus that decide alike."""
    seen = np.isfinite(best_sim)  # -inf: no cluster yet, a new one opens at any tau
    if (seen & ~join).any():
        bounds[0] = max(bounds[0], float(best_sim[seen & ~join].max()))
    if join.any():
        bounds[1] = min(bounds[1], float(best_sim[join].min()))
