"""The judge metrics, defined once: AUROC and TNR at a fixed FNR.

- `auroc`: area under the ROC curve of the scores against the "same answer" label
  (scikit-learn's `roc_auc_score`; ties count half).
- `tnr_at_fnr` *(reconstructed definition)*: the threshold t is the largest positive
  score that keeps at most a share `fnr` of the label-1 pairs strictly below it, i.e.
  t = sorted(positive scores)[floor(fnr * n_pos)], so at least 80% of same-answer pairs
  still score >= t at fnr = 0.2. TNR = share of label-0 pairs scoring < t (caught as
  "different", i.e. kept apart by the pruner).

Both raise a one-line `DPError` when only one label is present. Nothing here scores pairs.
"""

from __future__ import annotations

import math

import numpy as np

from dp.errors import DPError


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise DPError(f"{s.size} scores for {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise DPError("scores contain NaN or infinity")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise DPError("AUROC undefined: pairs of both labels needed")
    return s, y


def auroc(scores, labels) -> float:
    """Area under the ROC curve; labels 1 = same final answer."""
    from sklearn.metrics import roc_auc_score

    s, y = _check(scores, labels)
    return float(roc_auc_score(y, s))


def fnr_threshold(pos_scores: np.ndarray, fnr: float = 0.2) -> float:
    """The largest positive score t with share(pos < t) <= fnr."""
    if not 0.0 <= fnr < 1.0:
        raise DPError(f"fnr must be in [0, 1), got {fnr}")
    pos = np.sort(np.asarray(pos_scores, dtype=np.float64))
    return float(pos[int(math.floor(fnr * pos.size + 1e-9))])


def tnr_at_fnr(scores, labels, fnr: float = 0.2) -> float:
    """Share of label-0 pairs scoring below the threshold that still passes (1 - fnr) of label-1 pairs."""
    s, y = _check(scores, labels)
    t = fnr_threshold(s[y], fnr)
    return float(np.mean(s[~y] < t))


def judge_metrics(scores, labels, fnr: float = 0.2) -> dict:
    """{'auroc', 'tnr_at_fnr_0_2' (named after fnr), 'pairs', 'positive_rate'}."""
    y = np.asarray(labels)
    key = "tnr_at_fnr_" + f"{fnr:g}".replace(".", "_")
    return {"auroc": auroc(scores, labels), key: tnr_at_fnr(scores, labels, fnr),
            "pairs": int(y.size), "positive_rate": float(np.mean(y)) if y.size else float("nan")}
