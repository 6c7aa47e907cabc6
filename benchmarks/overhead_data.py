"""SYNTHETIC paper-shaped traces in a real tokenizer's ids, for `bench_overhead.py`.

Like `scale_data.py` (Zipf word tokens, a reasoning word about every 40 tokens,
answers: a majority class of 40-90%, a few others, ~3% none) but every token is
one real SmolLM2 token (a single-token ASCII word), and the answer sentence is
tokenized, so `decode(token_ids)` is the trace's text and the live path
(arrival detection, answers, records) runs on it as on a model's output. Every
trace has exactly `length` tokens (the sizes of issue 26: 128, 4 K, 32 K); the
raw per-token arrays an engine hands over (sampled log-prob, top-20 ids and
log-probs) are filled. Nothing here is a model's output.
"""

from __future__ import annotations

import numpy as np

from dp.types import AnswerKind, Problem

REASONING = (" wait", " so", " but", " therefore", " alternatively", " however", " check", " thus")
WORDS = 4096
K = 20


class TokenVocab:
    """Single-token words of a byte-level tokenizer; index i < len(REASONING) is a reasoning word."""

    def __init__(self, tokenizer):
        vocab = tokenizer.get_vocab()
        reason = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in REASONING]
        if any(len(r) != 1 for r in reason):
            raise SystemExit("error: a reasoning word is not one token of this tokenizer")
        words = sorted(i for p, i in vocab.items() if p.startswith("Ġ") and p[1:].isascii() and p[1:].isalpha())
        words = [i for i in words if i not in {r[0] for r in reason}][: WORDS - len(REASONING)]
        self.ids = np.array([r[0] for r in reason] + words, dtype=np.int32)
        ranks = np.arange(1, len(words) + 1, dtype=np.float64)
        self.word_p = (1 / ranks) / (1 / ranks).sum()
        self.tokenizer = tokenizer
        self.size = len(tokenizer)


def problems(count: int, n: int, seed: int) -> list[tuple[Problem, list[str | None]]]:
    """`count` SYNTHETIC problems with the answers of their n traces."""
    out = []
    for pid in range(count):
        rng = np.random.default_rng([seed, pid, 1])
        gold = str(100 + pid)
        share = rng.uniform(0.4, 0.9)
        others = [str(2000 + 10 * pid + k) for k in range(int(rng.integers(2, 9)))]
        p = np.r_[share, rng.dirichlet(np.full(len(others), 0.7)) * (1 - share - 0.03), 0.03]
        values = [gold, *others, None]
        pick = rng.choice(len(p), n, p=p / p.sum())
        out.append((Problem(dataset="synthetic", problem_id=f"syn-{pid:03d}",
                            question=f"SYNTHETIC problem {pid}: what is {pid} + 100?", gold=gold,
                            kind=AnswerKind.NUMBER), [values[i] for i in pick]))
    return out


def raw_trace(vocab: TokenVocab, length: int, answer: str | None, rng: np.random.Generator) -> dict:
    """The arrays an engine hands over for one trace of `length` tokens (top-20 included)."""
    tail = [] if answer is None else vocab.tokenizer(f" The answer is \\boxed{{{answer}}}.",
                                                     add_special_tokens=False)["input_ids"]
    tail = tail[: max(0, length - 1)]
    m = length - len(tail)
    words = len(REASONING) + rng.choice(len(vocab.ids) - len(REASONING), m, p=vocab.word_p)
    reason = rng.random(m) < 1 / 40
    words[reason] = rng.integers(0, len(REASONING), int(reason.sum()))
    ids = np.r_[vocab.ids[words], np.asarray(tail, dtype=np.int32)].astype(np.int32)
    near = rng.random(length) < 0.75
    top = -np.sort(np.where(near[:, None], rng.exponential(0.6, (length, K)), rng.exponential(0.3, (length, K))),
                   axis=1)
    top[:, 0] = -np.where(near, rng.exponential(0.01, length), rng.exponential(1.2, length))
    top = -np.sort(-top, axis=1)
    topk_ids = rng.integers(0, vocab.size, (length, K)).astype(np.int32)
    topk_ids[:, 0] = ids
    return {"token_ids": ids, "sampled_logprobs": top[:, 0].astype(np.float32), "topk_ids": topk_ids,
            "topk_logprobs": top.astype(np.float32)}
