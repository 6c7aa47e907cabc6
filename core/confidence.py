"""DeepConf's confidence measures, defined once (Fu et al., arXiv 2508.15260).

Token confidence  C_i = -(1/k) * sum of the k highest log-probabilities at step i.
The k values are the engine's top-k candidates; the sampled token counts only when
it is itself among the top k (vLLM's extra "sampled token" entry is dropped).
Group confidence = mean of C over a sliding window of `window` tokens (a trace
shorter than the window has one group: its whole mean). A trace's score is its
lowest group confidence. Missing values stay missing (NaN in, NaN out); nothing
here is ever filled with 0. The k log-probs are summed left to right from the
largest (`np.cumsum`, sequential), so `row_confidence`, the same number for one
step in plain Python (the live path's one-token delta, no numpy call), is equal
to the bit.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Sequence
from functools import reduce
from operator import add

import numpy as np

DEFAULT_TOPK = 20
DEFAULT_WINDOW = 2048


def token_confidence(topk_logprobs: np.ndarray, k: int = DEFAULT_TOPK) -> np.ndarray:
    """(n, m) top log-probs per step (any order, NaN for absent) -> (n,) float32 confidence.

    Uses the k largest of the m candidates at each step. A step with no finite
    candidate gives NaN.
    """
    lp = np.asarray(topk_logprobs, dtype=np.float64)
    if lp.ndim != 2:
        raise ValueError(f"topk_logprobs must be 2-D (steps, candidates), got shape {lp.shape}")
    lp = np.where(np.isfinite(lp), lp, np.nan)
    lp = -np.sort(-np.nan_to_num(lp, nan=-np.inf), axis=1)[:, :k]  # descending, top k
    finite = np.isfinite(lp)
    count = finite.sum(axis=1)
    # left to right from the largest (absent ones add 0.0 at the end): the order row_confidence adds in
    total = np.cumsum(np.where(finite, lp, 0.0), axis=1)[:, -1] if lp.shape[1] else np.zeros(lp.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, -total / count, np.nan)
    return conf.astype(np.float32)


def row_confidence(logprobs: Sequence[float], k: int = DEFAULT_TOPK) -> float:
    """`token_confidence` of one step, in plain Python: the same float32 inputs, float64 sum in the
    same order and float32 result (a float), NaN when no candidate is finite."""
    vals = logprobs if type(logprobs) is array and logprobs.typecode == "f" else array("f", logprobs)
    if vals and math.isfinite(sum(vals)):  # the usual row (sum() only probes for inf / NaN here)
        top = sorted(vals, reverse=True)[:k]
    else:
        top = sorted((v for v in vals if math.isfinite(v)), reverse=True)[:k]
        if not top:
            return math.nan
    return as_float32(-reduce(add, top, 0.0) / len(top))  # reduce: strictly left to right, like the loop


_F32 = struct.Struct("f")


def as_float32(x: float) -> float:
    """x rounded to float32 (as a Python float), like np.float32(x) without a numpy call."""
    return _F32.unpack(_F32.pack(x))[0]


def group_confidence(conf: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """(n,) token confidences -> (max(n - window + 1, 1),) sliding-window means.

    Entry j is the mean of conf[j : j + window]; a trace shorter than the window
    yields its overall mean. Empty input gives an empty array.
    """
    c = np.asarray(conf, dtype=np.float64)
    if c.size == 0:
        return np.zeros(0)
    if c.size <= window:
        return np.array([c.mean()])
    cs = np.concatenate([[0.0], np.cumsum(c)])
    return (cs[window:] - cs[:-window]) / window


def running_group_confidence(conf: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """(n,) token confidences -> (n,) mean of the last min(window, i+1) tokens at each step i.

    This is what the online rule sees after token i: during warm-up of the first
    window tokens the mean is over the tokens so far.
    """
    c = np.asarray(conf, dtype=np.float64)
    cs = np.concatenate([[0.0], np.cumsum(c)])
    i = np.arange(1, c.size + 1)
    lo = np.maximum(i - window, 0)
    return (cs[i] - cs[lo]) / (i - lo)


def trace_score(conf: np.ndarray, window: int = DEFAULT_WINDOW) -> float:
    """Lowest group confidence of a finished trace (NaN for an empty trace)."""
    g = group_confidence(conf, window)
    return float(g.min()) if g.size else float("nan")
