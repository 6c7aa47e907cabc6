"""DeepConf online (Fu et al., arXiv 2508.15260), replayed from stored token confidences.

The first `warmup` traces of each arrival order run to the end; their trace
scores (lowest group confidence, `dp.confidence`) set the threshold: the
90th percentile for DeepConf-low (keeps the top 10%), the 10th for DeepConf-high
(keeps the top 90%). Every later trace stops as soon as the mean confidence of
its last `window` tokens drops below the threshold (checked once it has `window`
tokens, or at its end when shorter - the same quantity the score is built from,
so calibration and enforcement use one definition). Survivors (warm-up traces
scoring at or above the threshold, and later traces that were not stopped) vote,
weighted by their trace score. Missing confidences are an error, never zeros.

The same object serves the replay (`plan`, R arrival orders at once) and the live
runner (`dp.simulate.live.deepconf`): `threshold` turns warm-up scores into the
cut and `Monitor` applies it to a trace as its tokens stream in - the running
value it compares is computed exactly as the replay's profile is.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

from dp.confidence import DEFAULT_WINDOW, running_group_confidence
from dp.errors import DPError
from dp.simulate.policies.base import Plan


@dataclass(frozen=True)
class DeepConfParams:
    warmup: int = 16  # traces that calibrate the threshold
    percentile: float = 90.0  # threshold percentile of warm-up scores (90 = low, 10 = high)
    conf_window: int = DEFAULT_WINDOW  # tokens per group

    def __post_init__(self):
        if self.warmup < 1 or self.conf_window < 1:
            raise DPError("warmup and conf_window must be >= 1")
        if not 0 <= self.percentile <= 100:
            raise DPError(f"percentile must be in [0, 100], got {self.percentile}")


def _profile(conf: np.ndarray, window: int) -> tuple[int, np.ndarray]:
    """(first checked position, running minimum of the windowed mean from there on)."""
    run = running_group_confidence(conf, window)
    start = min(window, conf.size) - 1
    return start, np.minimum.accumulate(run[start:]) if conf.size else np.zeros(0)


class Monitor:
    """One trace's online check: feed token confidences as they stream in; `stop_at`
    becomes the number of tokens after which the trace stops (None while it runs on)."""

    def __init__(self, thr: float, window: int):
        self.thr, self.window = float(thr), int(window)
        self._cs = array("d", [0.0])  # cs[i]: sum of the first i (the same sequential additions as np.cumsum)
        self.n = 0  # tokens fed
        self.stop_at: int | None = None

    @property
    def cs(self) -> np.ndarray:
        return np.array(self._cs, dtype=np.float64)

    def feed(self, conf, done: bool = False) -> int | None:
        """Feed the next token confidences (an array or a list of floats)."""
        if self.stop_at is not None:
            return self.stop_at
        old, m, cs = self.n, len(conf), self._cs
        if m == 1:  # the usual delta: the same float64 addition as np.cumsum, without numpy calls
            cs.append(cs[old] + float(conf[0]))
        elif m:  # O(new tokens) a delta: nothing fed before is copied
            cs.frombytes(np.cumsum(np.concatenate([[cs[old]], np.asarray(conf, dtype=np.float64)]))[1:].tobytes())
        self.n = n = old + m
        w = self.window
        if n == 0:
            return None
        first = max(old, w - 1) if not (done and n < w) else n - 1  # positions checked now
        if n - first == 1:  # one position: the same float64 operations as below, as scalars
            lo = max(n - w, 0)
            if (cs[n] - cs[lo]) / (n - lo) < self.thr:
                self.stop_at = n
            return self.stop_at
        v = np.frombuffer(cs, dtype=np.float64)  # a view for this call only (cs grows on the next)
        i = np.arange(first, n) + 1
        lo = np.maximum(i - w, 0)
        run = (v[i] - v[lo]) / (i - lo)
        below = np.flatnonzero(run < self.thr)
        if below.size:
            self.stop_at = int(first + below[0] + 1)
        return self.stop_at


class DeepConf:
    needs_judge = False
    needs_confidence = True

    def __init__(self, params: DeepConfParams | None = None, name: str = "deepconf", **kw):
        self.params = params or DeepConfParams(**kw)
        self.name = name

    def score(self, conf: np.ndarray) -> float:
        """A finished trace's score: its lowest group confidence (NaN when empty)."""
        _, mins = _profile(conf, self.params.conf_window)
        return float(mins[-1]) if mins.size else float("nan")

    def threshold(self, warm_scores: np.ndarray) -> np.ndarray:
        """(R, w) warm-up trace scores -> (R,) the cut."""
        return np.percentile(warm_scores, self.params.percentile, axis=-1)

    def monitor(self, thr: float) -> Monitor:
        return Monitor(thr, self.params.conf_window)

    def plan(self, ctx, orders: np.ndarray, rng) -> Plan:
        if ctx.confidence is None:
            raise DPError("DeepConf needs token confidences; this run has none (imported text?)")
        p = self.params
        profiles = ctx.memo(("deepconf", p.conf_window), lambda: [_profile(c, p.conf_window) for c in ctx.confidence])
        score = np.array([m[-1] if m.size else np.nan for _, m in profiles])  # lowest group confidence
        R, N = orders.shape
        warm = orders[:, : min(p.warmup, N)]
        bad = np.unique(warm[np.isnan(score[warm])])
        if bad.size:
            raise DPError(f"DeepConf: warm-up trace(s) {', '.join(map(str, bad[:5].tolist()))} of problem "
                          f"'{ctx.problem_id}' have no token confidence (empty trace?); cannot set a threshold")
        thr = self.threshold(score[warm])  # (R,)
        is_warm = np.zeros((R, N), dtype=bool)
        np.put_along_axis(is_warm, warm, True, axis=1)
        stop_at = np.tile(ctx.lengths, (R, 1))
        stopped = np.zeros((R, N), dtype=bool)
        for t, (start, mins) in enumerate(profiles):
            j = np.searchsorted(-mins, -thr, side="right")  # first position with mins < thr
            hit = (j < mins.size) & ~is_warm[:, t]
            stop_at[hit, t] = start + j[hit] + 1
            stopped[hit, t] = True
        voters = np.where(is_warm, score[None, :] >= thr[:, None], ~stopped)
        return Plan(stop_at=stop_at, voters=voters, weights=np.broadcast_to(score, (R, N)).copy(),
                    judge_pairs=np.zeros(R, dtype=np.int64))
