"""Reads of trace texts by token offsets, a few traces at a time, without decoding whole traces.

The cutting happens in DuckDB: a prefix is `substr(text, 1, end_offset of its last
token)`, a head is the first characters of a text, and a count of tokens before a
character is a count over one trace's `end_offset` rows. Python only ever holds
the prefixes asked for, never a trace's full text or its per-token rows, so the
callers (judge pairs, simulator contexts) can walk a run problem by problem in
memory bounded by one problem. Offsets and lengths are in characters (code
points), as `tokens.end_offset` and Python's `str` count them.

Knows nothing about truncation rules; `dp.judge.prefix_reader` decides where to cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from dp.cache.store import Cache


def _want(cache: Cache, trace_ids: Sequence[int], **cols: np.ndarray) -> tuple[int, int]:
    """Register a temp table `_want(i, tid, ...)`; returns the trace-id range, which every query
    also filters on so DuckDB skips the other traces' rows (a join alone scans the whole table)."""
    ids = np.asarray(trace_ids, dtype=np.int64)
    data = {"i": pa.array(np.arange(ids.size), pa.int64()), "tid": pa.array(ids, pa.int64())}
    data.update({k: pa.array(np.asarray(v, dtype=np.int64), pa.int64()) for k, v in cols.items()})
    cache.insert_arrow("_want", pa.table(data), create=True, temp=True)
    return (int(ids.min()), int(ids.max())) if ids.size else (0, -1)


def _drop(cache: Cache) -> None:
    cache.con.execute("DROP TABLE IF EXISTS _want")


def prefixes_at(cache: Cache, trace_ids: Sequence[int], n_tokens: Sequence[int]) -> list[str]:
    """The text of each trace up to the end of its first `n_tokens` tokens (0 -> ''), in the order given.

    `n_tokens` larger than a trace's length is cut at its last token.
    """
    ids = np.asarray(trace_ids, dtype=np.int64)
    if ids.size == 0:
        return []
    k = np.asarray(n_tokens, dtype=np.int64)
    lo, hi = _want(cache, ids, k=k)
    try:
        rows = cache.con.execute(
            "WITH last AS ("
            "  SELECT w.i, max(t.end_offset) AS e FROM _want w JOIN tokens t "
            "  ON t.trace_id = w.tid AND t.pos < w.k WHERE t.trace_id BETWEEN ? AND ? GROUP BY w.i) "
            "SELECT w.i, coalesce(substr(tr.text, 1, l.e), '') AS p FROM _want w "
            "JOIN (SELECT trace_id, text FROM traces WHERE trace_id BETWEEN ? AND ?) tr ON tr.trace_id = w.tid "
            "LEFT JOIN last l ON l.i = w.i",
            [lo, hi, lo, hi],
        ).fetchall()
    finally:
        _drop(cache)
    out = [""] * ids.size
    for i, p in rows:
        out[int(i)] = p
    return out


def end_offsets_at(cache: Cache, trace_ids: Sequence[int], n_tokens: Sequence[int]) -> np.ndarray:
    """(n,) int64: the end offset of each trace's first `n_tokens` tokens (0 for none); no text is read."""
    ids = np.asarray(trace_ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(0, np.int64)
    return _token_aggregate(cache, ids, "max(t.end_offset)", "t.pos < w.k", k=np.asarray(n_tokens, np.int64))


def text_heads(cache: Cache, trace_ids: Sequence[int], n_chars: int) -> list[str]:
    """The first `n_chars` characters of each text, in the order given (shorter: the whole text)."""
    ids = np.asarray(trace_ids, dtype=np.int64)
    if ids.size == 0:
        return []
    lo, hi = _want(cache, ids)
    try:
        rows = cache.con.execute(
            "SELECT w.i, substr(t.text, 1, ?) FROM _want w "
            "JOIN (SELECT trace_id, text FROM traces WHERE trace_id BETWEEN ? AND ?) t ON t.trace_id = w.tid",
            [int(n_chars), lo, hi],
        ).fetchall()
    finally:
        _drop(cache)
    heads = [""] * ids.size
    for i, h in rows:
        heads[int(i)] = h or ""
    return heads


def tokens_before(cache: Cache, trace_ids: Sequence[int], char_ends: Sequence[int]) -> np.ndarray:
    """(n,) int64: tokens of each trace whose end offset is below `char_ends[i]`."""
    ids = np.asarray(trace_ids, dtype=np.int64)
    if ids.size == 0:
        return np.zeros(0, np.int64)
    return _token_aggregate(cache, ids, "count(*)", "t.end_offset < w.e", e=np.asarray(char_ends, np.int64))


def _token_aggregate(cache: Cache, ids: np.ndarray, agg: str, cond: str, **cols) -> np.ndarray:
    """(n,) int64: `agg` over each trace's tokens that satisfy `cond` (per-trace values in `cols`,
    columns of `_want`); 0 where no token does. `agg` and `cond` are fixed SQL text from this module."""
    lo, hi = _want(cache, ids, **cols)
    try:
        rows = cache.con.execute(
            f"SELECT w.i, {agg} FROM _want w JOIN tokens t ON t.trace_id = w.tid AND {cond} "
            "WHERE t.trace_id BETWEEN ? AND ? GROUP BY w.i", [lo, hi],
        ).fetchall()
    finally:
        _drop(cache)
    out = np.zeros(ids.size, np.int64)
    for i, v in rows:
        out[int(i)] = int(v)
    return out
