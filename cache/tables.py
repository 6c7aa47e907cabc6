"""Per-token tables as the cache stores them, built from `TraceRecord`s as Arrow in bulk.

`stored_float` is the one rounding of stored floats (log-probs, confidences); `token_table` and
`topk_table` lay many traces' tokens out as rows without per-token Python. No SQL here: the
`Cache` inserts what these build.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from dp.confidence import as_float32
from dp.types import TraceRecord

FLOAT_DECIMALS = 3  # log-probs and confidences are stored rounded to 1e-3: the one rounding


def stored_float(x) -> np.ndarray:
    """A float column as the cache stores it (rounded to FLOAT_DECIMALS, float32): the one rounding."""
    return np.round(np.asarray(x, dtype=np.float64), FLOAT_DECIMALS).astype(np.float32)


_SCALE = 10.0 ** FLOAT_DECIMALS


def stored_scalar(x: float) -> float:
    """`stored_float` of one number in plain Python (a float holding the float32): numpy rounds by
    scaling, rounding half to even and scaling back, as done here."""
    if not math.isfinite(x):
        return x
    return as_float32(round(x * _SCALE) / _SCALE)


def rounded(x: np.ndarray | None, n: int) -> pa.Array:
    if x is None:
        return pa.nulls(n, pa.float32())
    v = stored_float(x)
    return pa.array(v, pa.float32(), mask=~np.isfinite(v))


def token_table(ids: Sequence[int], records: Sequence[TraceRecord]) -> pa.Table:
    """All tokens of many traces as one Arrow table (no per-token Python)."""
    lengths = np.array([r.n_tokens for r in records], dtype=np.int64)
    tid = np.repeat(np.asarray(ids, dtype=np.int32), lengths)
    pos = (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
    total = int(lengths.sum())

    def cat(name: str) -> pa.Array:
        parts = [getattr(r, name) for r in records]
        if all(p is None for p in parts):
            return pa.nulls(total, pa.float32())
        arr = np.concatenate([
            np.full(r.n_tokens, np.nan, dtype=np.float32) if p is None else np.asarray(p, np.float32)
            for r, p in zip(records, parts, strict=True)
        ]) if records else np.zeros(0, np.float32)
        return rounded(arr, total)

    token_ids = np.concatenate([np.asarray(r.token_ids, np.int32) for r in records])
    offsets = np.concatenate([np.asarray(r.offsets, np.int32) for r in records])
    return pa.table({
        "trace_id": tid, "pos": pos, "token_id": token_ids,
        "logprob": cat("logprobs"), "confidence": cat("confidence"), "end_offset": offsets,
    })


def topk_table(ids: Sequence[int], records: Sequence[TraceRecord]) -> pa.Table | None:
    keep = [(t, r) for t, r in zip(ids, records, strict=True) if r.topk_ids is not None]
    if not keep:
        return None
    tids, poss, ranks, toks, lps = [], [], [], [], []
    for t, r in keep:
        n, k = r.topk_ids.shape
        tids.append(np.full(n * k, t, np.int32))
        poss.append(np.repeat(np.arange(n, dtype=np.int32), k))
        ranks.append(np.tile(np.arange(k, dtype=np.int8), n))
        toks.append(np.asarray(r.topk_ids, np.int32).ravel())
        lps.append(np.asarray(r.topk_logprobs, np.float32).ravel())
    lp = np.concatenate(lps)
    return pa.table({"trace_id": np.concatenate(tids), "pos": np.concatenate(poss),
                     "rank": np.concatenate(ranks), "token_id": np.concatenate(toks),
                     "logprob": rounded(lp, lp.size)})
