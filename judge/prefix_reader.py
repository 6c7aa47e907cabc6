"""Decision points and prefix texts of cached traces under a `TruncationRule`, read by offsets.

The streaming counterpart of `decision_points` + `prefix_text` (`dp.judge.truncation`),
with the same results: `tokens:k` needs no text at all until the cut (`min(k, n)`
tokens, then the text up to that token's end offset); `words:k` reads only a head
of each text, long enough to hold the k-th reasoning word (grown x4 until it does
or the whole text is read), and counts the tokens before it in the cache. Callers
hand over one problem's traces at a time, so nothing holds a run's texts or tokens.

Scores nothing; the cache does the reading (`dp.cache.offsets`).
"""

from __future__ import annotations

import numpy as np

from dp.cache.offsets import end_offsets_at, prefixes_at, text_heads, tokens_before
from dp.cache.store import Cache
from dp.judge.base import Prefix
from dp.judge.truncation import TruncationKind, TruncationRule, word_end

FIRST_HEAD_CHARS = 16_384  # first head read for words:k; grows x4 while the k-th word is not in it
# A match this far from the end of a cut head is final: no longer alternative (a phrase) and no
# word boundary beyond the head could change it. Larger than any reasoning phrase.
HEAD_MARGIN = 256


def word_decisions(cache: Cache, trace_ids: np.ndarray, lengths: np.ndarray, rule: TruncationRule,
                   first_head: int = FIRST_HEAD_CHARS) -> tuple[np.ndarray, list[str]]:
    """((n,) int64 decision points of a words:k rule, the head of each text that was read)."""
    n = len(trace_ids)
    ends = np.full(n, -1, dtype=np.int64)  # character end of the k-th word; -1: fewer than k words
    kept = [""] * n
    todo, size = np.arange(n), int(first_head)
    while todo.size:
        again = []
        for j, head in zip(todo, text_heads(cache, trace_ids[todo], size), strict=True):
            whole = len(head) < size
            end = word_end(head, rule.k, rule.words)
            kept[j] = head
            if end is not None and (whole or end <= len(head) - HEAD_MARGIN):
                ends[j] = end
            elif not whole:
                again.append(j)
        todo, size = np.asarray(again, dtype=np.int64), size * 4
    found = ends >= 0
    dec = np.asarray(lengths, dtype=np.int64).copy()
    if found.any():
        before = tokens_before(cache, trace_ids[found], ends[found])
        dec[found] = np.minimum(before + 1, dec[found])
    return dec, kept


def read_prefixes(cache: Cache, trace_ids: np.ndarray, lengths: np.ndarray, classes: np.ndarray,
                  rule: TruncationRule) -> tuple[np.ndarray, list[Prefix]]:
    """((n,) int64 decision points, n Prefixes) of one problem's traces under `rule`."""
    trace_ids = np.asarray(trace_ids, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if rule.kind == TruncationKind.TOKENS:
        dec = np.minimum(lengths, rule.k)
        texts = prefixes_at(cache, trace_ids, dec)
    else:
        # the heads already read usually hold the whole prefix: cut them, read again only the rest
        dec, heads = word_decisions(cache, trace_ids, lengths, rule)
        ends = end_offsets_at(cache, trace_ids, dec)
        texts = [h[:e] if e <= len(h) else None for h, e in zip(heads, ends, strict=True)]
        rest = [j for j, t in enumerate(texts) if t is None]
        for j, t in zip(rest, prefixes_at(cache, trace_ids[rest], dec[rest]), strict=True):
            texts[j] = t
    prefixes = [Prefix(int(t), text, int(d), int(c))
                for t, text, d, c in zip(trace_ids, texts, dec, classes, strict=True)]
    return dec, prefixes
