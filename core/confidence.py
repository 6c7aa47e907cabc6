"""DeepConf's confidence measures, defined once (Fu et al., arXiv 2508.15260).

Token confidence  C_i = -(1/k) * sum of the k highest log-probabilities at step i.
The k values are the engine's top-k candidates; the sampled token counts only when
it is itself among the top k (vLLM's extra "sampled token" entry is dropped).
Group confidence = mean of C over a sliding window of `window` tokens (a trace
shorter than the window has one group: its whole mean). A trace's score is its
lowest group confidence. Missing values stay missing (NaN in, NaN out); nothing
here is ever filled with 0.
"""

from __future__ import annotations

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
    total = np.where(finite, lp, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, -total / count, np.nan)
    return conf.astype(np.float32)


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
