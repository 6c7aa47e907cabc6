"""Raw per-token engine output -> `TraceRecord`, one path for every engine.

Both engines hand over the same raw arrays (token ids, the sampled token's
log-prob, the top-k ids and log-probs); everything derived from them is computed
here once, so the vLLM and transformers engines give records with identical
fields and meaning:

- text = tokenizer.decode(token_ids, skip_special_tokens=True) (the EOS token
  stays in token_ids and gets a zero-width offset);
- offsets[i] = number of characters of `text` fully determined by the first i+1
  tokens, so text[:offsets[i]] == decode(token_ids[:i+1]) except where a token
  ends inside a multi-byte character (that character counts from the token that
  completes it; a U+FFFD of the text - bytes that are no character - counts from
  the token that starts it, as its prefix decodes to U+FFFD too); offsets are
  non-decreasing and offsets[-1] == len(text);
- confidence = dp.confidence.token_confidence(top-k log-probs, k).

Byte-level BPE tokenizers (GPT-2 style: SmolLM2, Llama 3, Qwen) get offsets from a
per-vocabulary byte table with numpy, linear in length, also for traces that end
inside a character (a `max_tokens` cut) or hold bytes that are no character (decoded
as the tokenizer does: one U+FFFD per maximal invalid subpart). Any other tokenizer,
or a decoder that does more than map bytes, falls back to decoding every prefix
(quadratic in length, exact). Nothing here runs a model.
"""

from __future__ import annotations

import codecs
import os
import threading
from functools import lru_cache

import numpy as np

from dp.confidence import token_confidence
from dp.types import FinishReason, TraceRecord


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-unicode table, inverted (unicode char -> byte)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class TokenText:
    """Decodes token ids to (text, offsets) for one tokenizer; build once per engine."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.byte_level = "ByteLevel" in type(_decoder(tokenizer)).__name__ + str(_decoder(tokenizer))
        self._bytes: list[bytes] | None = None
        self._lens: np.ndarray | None = None  # (vocab,) int64 byte length; -1 = not byte-mappable
        if self.byte_level:
            self._build_tables()

    def _build_tables(self) -> None:
        tok = self.tokenizer
        dec = _byte_decoder()
        vocab = tok.get_vocab()
        size = max(max(vocab.values()) + 1, len(tok))
        table: list[bytes | None] = [None] * size
        for piece, i in vocab.items():
            if all(c in dec for c in piece):
                table[i] = bytes(dec[c] for c in piece)
        special = set(tok.all_special_ids)
        for i, added in getattr(tok, "added_tokens_decoder", {}).items():
            # special tokens vanish with skip_special_tokens; other added tokens decode verbatim
            table[i] = b"" if (i in special or getattr(added, "special", False)) else str(added).encode()
        self._lens = np.array([-1 if b is None else len(b) for b in table], dtype=np.int64)
        self._bytes = [b"" if b is None else b for b in table]

    def token_bytes(self, token_ids) -> bytes | None:
        """The UTF-8 bytes of these tokens, concatenated (what `decode` would decode), or None when
        the tokenizer is not byte-level or an id has no byte form: then only `decode` is exact."""
        if not self.byte_level:
            return None
        ids = np.asarray(token_ids, dtype=np.int64)
        if ids.size and (ids.max() >= len(self._lens) or (self._lens[ids] < 0).any()):
            return None
        return b"".join(map(self._bytes.__getitem__, ids.tolist()))

    def decode(self, token_ids: np.ndarray) -> tuple[str, np.ndarray]:
        """(n,) ids -> (text, (n,) int32 end offsets in characters of text)."""
        ids = np.asarray(token_ids, dtype=np.int64)
        text = self.tokenizer.decode(ids.tolist(), skip_special_tokens=True)
        if ids.size == 0:
            return text, np.zeros(0, dtype=np.int32)
        offsets = None
        if self.byte_level and ids.max() < len(self._lens) and (self._lens[ids] >= 0).all():
            offsets = self._byte_offsets(ids, text)
        if offsets is None:
            offsets = _prefix_offsets(self.tokenizer, ids, text)
        return text, offsets

    def _byte_offsets(self, ids: np.ndarray, text: str) -> np.ndarray | None:
        data = b"".join(map(self._bytes.__getitem__, ids.tolist()))
        ends = np.cumsum(self._lens[ids])  # (n,) byte end of each token
        decoded, starts = utf8_units(data)
        if decoded != text:  # the decoder does more than map bytes (cleanup, prefix space)
            return None
        return unit_offsets(decoded, starts, ends)


_spans = threading.local()  # the invalid spans of the decode running in this thread


def _replace_recording(exc: UnicodeDecodeError):
    """`errors="replace"` that also notes each invalid span (start, end) for `utf8_units`."""
    _spans.found.append((exc.start, exc.end))
    return "\ufffd", exc.end


codecs.register_error("dp-replace-recording", _replace_recording)


def utf8_units(data: bytes) -> tuple[str, np.ndarray]:
    """Decode UTF-8 as the byte-level tokenizers do (each maximal invalid subpart -> U+FFFD,
    like Rust's from_utf8_lossy and Python's errors="replace"); returns the text and the byte
    start of each of its characters ((len(text),) int64, increasing)."""
    _spans.found = spans = []
    text = data.decode("utf-8", "dp-replace-recording")
    buf = np.frombuffer(data, dtype=np.uint8)
    lead = (buf & 0xC0) != 0x80  # first byte of each valid character
    for a, b in spans:  # few: one per run of bytes that are no character
        lead[a] = True
        lead[a + 1 : b] = False
    return text, np.flatnonzero(lead)


def unit_offsets(text: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Offsets (see the module doc) from character byte starts and token byte ends, linear.

    offsets[i] = characters of `text` that decode(bytes[:ends[i]]) reproduces: every character
    whose bytes end by ends[i], plus the one cut there when it is U+FFFD (a cut character
    decodes to U+FFFD, which matches only a U+FFFD of the text). None if `starts` does not fit
    `text` (then only decoding every prefix is exact).
    """
    if starts.size != len(text):
        return None
    total = int(ends[-1]) if ends.size else 0
    char_ends = np.append(starts[1:], total)  # byte end of each character
    done = np.searchsorted(char_ends, ends, side="right")  # characters complete by each token end
    cut = done < starts.size
    cut[cut] = starts[done[cut]] < ends[cut]  # the token ends inside character `done`
    if cut.any():
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        cut[cut] = codes[done[cut]] == 0xFFFD
    return (done + cut).astype(np.int32)


def _decoder(tokenizer):
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return getattr(backend, "decoder", None)


def _prefix_offsets(tokenizer, ids: np.ndarray, text: str) -> np.ndarray:
    """Generic fallback: decode every prefix in one batch call (O(n^2) characters).

    offsets[i] = length of the longest common prefix of decode(ids[:i+1]) and text,
    so a trailing U+FFFD of a half-decoded character does not count.
    """
    seqs = [ids[: i + 1].tolist() for i in range(ids.size)]
    prefixes = tokenizer.batch_decode(seqs, skip_special_tokens=True)
    lens = np.array([len(os.path.commonprefix([p, text])) for p in prefixes])
    lens[-1] = len(text)
    return np.minimum.accumulate(lens[::-1])[::-1].astype(np.int32)  # non-decreasing


def build_record(
    *,
    problem_id: str,
    index: int,
    seed: int | None,
    token_ids: np.ndarray,  # (n,) int, generated ids (EOS included when the model stopped)
    sampled_logprobs: np.ndarray,  # (n,) float, log-prob of each sampled token
    topk_ids: np.ndarray,  # (n, k) int, top-k ids by rank
    topk_logprobs: np.ndarray,  # (n, k) float, their log-probs
    finish_reason: FinishReason,
    k: int,
    store_topk: bool,
    token_text: TokenText,
) -> TraceRecord:
    """The one constructor of generated TraceRecords."""
    ids = np.asarray(token_ids, dtype=np.int32)
    text, offsets = token_text.decode(ids)
    topk_lp = np.asarray(topk_logprobs, dtype=np.float32).reshape(ids.size, k)
    return TraceRecord(
        problem_id=problem_id,
        index=int(index),
        text=text,
        token_ids=ids,
        offsets=offsets,
        seed=None if seed is None else int(seed),
        finish_reason=finish_reason,
        logprobs=np.asarray(sampled_logprobs, dtype=np.float32),
        confidence=token_confidence(topk_lp, k),
        topk_ids=np.asarray(topk_ids, dtype=np.int32).reshape(ids.size, k) if store_topk else None,
        topk_logprobs=topk_lp if store_topk else None,
    )
