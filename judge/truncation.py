"""The one definition of where a trace's prefix ends: `TruncationRule` and `decision_point`.

Judges, the pair builder, the simulator and the live runner all import this module,
so "the prefix a judge sees" and "the tokens a pruned trace costs" cannot drift apart.

- `tokens:k` - the first k tokens (or the whole trace when it is shorter).
- `words:k`  - the tokens up to and including the k-th reasoning word (a marker of a
  reasoning step, matched case-insensitively on word boundaries), or the whole trace
  when it has fewer than k of them.

The word list is *(reconstructed)*: the paper names "wait", "thus", "since", ... but
publishes no list. It lives in `REASONING_WORDS` only; a rule may carry its own list
(`words:25:wait,so,hmm`), and that list is part of the rule's string, hence of every
cache key built from it.

Nothing here reads the cache or runs a judge.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from dp.errors import DPError

# (reconstructed) Markers of a reasoning step. The first eight are the ones the paper
# names; "however" and "hence" are their plain synonyms. Phrases of several words work.
REASONING_WORDS: tuple[str, ...] = (
    "wait", "thus", "since", "so", "therefore", "but", "hmm", "alternatively",
    "however", "hence",
)


class TruncationKind(StrEnum):
    """How the prefix is cut: after a fixed number of tokens, or after the k-th reasoning word."""

    TOKENS = "tokens"
    WORDS = "words"


_BAD = "bad truncation rule '{}': expected tokens:K or words:K with K >= 1"


@dataclass(frozen=True)
class TruncationRule:
    """Where a trace's prefix ends. Frozen: it keys the judge-score cache via `str(rule)`."""

    kind: TruncationKind  # tokens | words
    k: int  # >= 1; tokens, or reasoning words
    words: tuple[str, ...] = REASONING_WORDS  # only for kind=words; lowercase markers

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TruncationKind(self.kind))
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise DPError(f"truncation k must be an integer >= 1, got {self.k!r}")
        object.__setattr__(self, "k", int(self.k))
        words = tuple(" ".join(w.lower().split()) for w in self.words)
        if not words or any(not w for w in words) or any("," in w or ":" in w for w in words):
            raise DPError(f"reasoning words must be non-empty and free of ',' and ':', got {self.words!r}")
        object.__setattr__(self, "words", words)

    @classmethod
    def parse(cls, s: str | TruncationRule) -> TruncationRule:
        """`tokens:500`, `words:25`, or `words:25:wait,so,hmm` (a custom word list)."""
        if isinstance(s, TruncationRule):
            return s
        parts = str(s).strip().split(":")
        if len(parts) not in (2, 3) or parts[0] not in ("tokens", "words") or not parts[1].isdigit():
            raise DPError(_BAD.format(s))
        k = int(parts[1])
        if k < 1 or (len(parts) == 3 and parts[0] != "words"):
            raise DPError(_BAD.format(s))
        if len(parts) == 3:
            words = tuple(w for w in parts[2].split(",") if w.strip())
            if not words:
                raise DPError(_BAD.format(s))
            return cls(TruncationKind.WORDS, k, words)
        return cls(TruncationKind(parts[0]), k)

    def __str__(self) -> str:
        base = f"{self.kind.value}:{self.k}"
        if self.kind == TruncationKind.WORDS and self.words != REASONING_WORDS:
            base += ":" + ",".join(self.words)
        return base


@functools.lru_cache(maxsize=64)
def words_pattern(words: tuple[str, ...]) -> re.Pattern:
    # Longest first, so a phrase wins over a word it starts with; inner spaces match any whitespace.
    alts = sorted((r"\s+".join(map(re.escape, w.split())) for w in words), key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


def word_end(text: str, k: int, words: tuple[str, ...] = REASONING_WORDS) -> int | None:
    """Character offset just after the k-th reasoning-word match in `text`, or None if fewer."""
    for i, m in enumerate(words_pattern(tuple(words)).finditer(text), start=1):
        if i == k:
            return m.end()
    return None


def decision_point(rule: TruncationRule, text: str, end_offsets: np.ndarray) -> int:
    """Number of tokens the trace has when its prefix under `rule` is complete.

    `end_offsets`: (n,) end character offset of each token in `text` (non-decreasing).
    tokens:k -> min(k, n). words:k -> the smallest token count whose text covers the end
    of the k-th reasoning word, or n when the trace has fewer than k of them.
    """
    n = int(len(end_offsets))
    if rule.kind == TruncationKind.TOKENS:
        return min(rule.k, n)
    end = word_end(text, rule.k, rule.words)
    if end is None:
        return n
    # first token whose end offset reaches `end`; tokens 0..i make the prefix
    i = int(np.searchsorted(np.asarray(end_offsets), end, side="left"))
    return min(i + 1, n)


def decision_points(
    rule: TruncationRule, texts: Sequence[str], offsets_list: Sequence[np.ndarray]
) -> np.ndarray:
    """(len(texts),) int64: `decision_point` of each trace."""
    if rule.kind == TruncationKind.TOKENS:
        lengths = np.fromiter((len(o) for o in offsets_list), dtype=np.int64, count=len(offsets_list))
        return np.minimum(lengths, rule.k)
    return np.array(
        [decision_point(rule, t, o) for t, o in zip(texts, offsets_list, strict=True)], dtype=np.int64
    )


def prefix_text(text: str, end_offsets: np.ndarray, n_tokens: int) -> str:
    """The text of the first `n_tokens` tokens (same cut as `Cache.prefix_texts`)."""
    n_tokens = min(int(n_tokens), len(end_offsets))
    return text[: int(end_offsets[n_tokens - 1])] if n_tokens > 0 else ""
