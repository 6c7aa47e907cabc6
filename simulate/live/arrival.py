"""When a streamed trace reaches its decision point, found in O(new tokens) per delta.

The live runner feeds each trace's token ids as the engine streams them;
`Arrival.feed` answers with the decision point (in tokens) once it is reached,
the same number `dp.judge.truncation.decision_point` gives on the finished text,
so live and replay cut every prefix alike:

- `tokens:k`: reached when the trace has k tokens (or ends shorter).
- `words:k`: reached when the k-th reasoning word is complete. A word match that
  touches the end of the text streamed so far is not counted until a further
  character arrives (or the trace ends): "so" at the end of one delta may be the
  start of "something" in the next.

Text is decoded incrementally from the tokenizer's byte table (an incremental
UTF-8 decoder holds characters split across deltas), and only a short tail of it
is kept and re-scanned, so a delta costs O(its tokens). For tokenizers without a
byte table the whole stream is decoded at each delta (exact, O(n)). Once a word
rule is reached, the stream is decoded once to map the word's end to a token
count. Knows nothing about engines or policies.
"""

from __future__ import annotations

import codecs
import weakref

import numpy as np

from dp.judge.truncation import TruncationKind, TruncationRule, decision_point, words_pattern

TAIL = 256  # characters kept before the scan position (longer than any reasoning word or phrase)
_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # token_text -> {token id: bytes or None}


def _token_bytes(token_text, new_ids) -> bytes | None:
    """`token_text.token_bytes(new_ids)`, memoized per token (a delta is a token or a few)."""
    memo = _BYTES.get(token_text)
    if memo is None:
        memo = _BYTES[token_text] = {}
    out = []
    for i in new_ids:
        b = memo.get(i, False)
        if b is False:
            b = memo[i] = token_text.token_bytes([i])
        if b is None:
            return None
        out.append(b)
    return b"".join(out)


class Arrival:
    """Decision-point detector for one streamed trace."""

    def __init__(self, rule: TruncationRule, token_text):
        self.rule = rule
        self.token_text = token_text
        self.ids: list[int] = []
        self.point: int | None = None  # tokens at the decision point, once reached
        self._pattern = words_pattern(rule.words)
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._incremental = True
        self._tail = ""  # text from absolute character `_base` on
        self._base = 0
        self._scan = 0  # absolute character where the next scan starts
        self._count = 0  # reasoning words confirmed so far
        # a match starting this far before the end is complete: single words need their length + 1
        # characters; phrases (any whitespace inside) the whole TAIL
        self._reach = TAIL if any(" " in w for w in rule.words) else max(map(len, rule.words), default=0) + 2

    def feed(self, new_ids, done: bool = False) -> int | None:
        """Add the ids of one delta (`done`: the trace has ended); the decision point once reached."""
        if self.point is not None:
            return self.point
        new_ids = [int(i) for i in new_ids]
        self.ids.extend(new_ids)
        n = len(self.ids)
        if self.rule.kind == TruncationKind.TOKENS:
            if n >= self.rule.k or done:
                self.point = min(self.rule.k, n)
            return self.point
        if self._words_reached(new_ids, done):
            text, offsets = self.token_text.decode(np.asarray(self.ids, dtype=np.int64))
            self.point = decision_point(self.rule, text, offsets)
        elif done:
            self.point = n
        return self.point

    def _append_text(self, new_ids) -> None:
        raw = _token_bytes(self.token_text, new_ids) if self._incremental else None
        if raw is None:  # no byte table (or an id without one): decode everything, exactly
            self._incremental = False
            text, _ = self.token_text.decode(np.asarray(self.ids, dtype=np.int64))
            self._tail, self._base = text[self._scan - 1 if self._scan else 0:], max(self._scan - 1, 0)
            return
        self._tail += self._utf8.decode(raw)

    def _words_reached(self, new_ids, done: bool) -> bool:
        self._append_text(new_ids)
        end = self._base + len(self._tail)
        for m in self._pattern.finditer(self._tail, self._scan - self._base):
            if m.end() >= len(self._tail) and not done:
                break  # may still grow into a longer word: wait for the next character
            self._count += 1
            self._scan = self._base + m.end()
            if self._count == self.rule.k:
                return True
        else:
            # no match can start before end - reach without ending before `end`: skip ahead
            self._scan = max(self._scan, end - self._reach)
        keep = max(self._scan - 1, self._base)  # one character of context for the word boundary
        self._tail, self._base = self._tail[keep - self._base:], keep
        return False
