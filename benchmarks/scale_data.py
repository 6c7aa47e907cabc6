"""SYNTHETIC paper-shaped traces for `bench_scale.py`: problems x N traces of thousands of tokens.

Nothing here is a model's output. Each trace is a stream of word tokens drawn from a
Zipf law over a fixed vocabulary (token ids spread over a 152K vocabulary, as
Qwen's), with a reasoning word ("wait", "so", "but", ...) about every 40 tokens so
`words:25` cuts ~1,000 tokens in, and ends with "The answer is \\boxed{X}".
Lengths: log-normal, median ~5.6 K tokens, clipped at 32 K (those finish with
`length` and no answer). Answers: per problem a majority class holding 40-90% of
the traces, the rest spread over 2-8 other answers, ~3% with no answer. Log-probs of
the sampled token and DeepConf token confidences are drawn to look like a
reasoning model's (mostly near 0 / 8-16). Everything derives from one seed.

It builds `TraceRecord`s only; writing them is the cache's job.
"""

from __future__ import annotations

import numpy as np

from dp.types import AnswerKind, FinishReason, Problem, TraceRecord

VOCAB_SIZE = 4096  # distinct word tokens used
ID_SPACE = 151_936  # token ids are spread over a Qwen-sized vocabulary
REASONING = (" wait", " so", " but", " hmm", " therefore", " alternatively", " let me check", " however")
MAX_TOKENS = 32_768
MEDIAN_TOKENS = 5_600
SIGMA = 0.55


class Vocab:
    """Token strings and ids; index i < len(REASONING) is a reasoning word."""

    def __init__(self, rng: np.random.Generator):
        letters = np.array(list("etaoinshrdlucmfwypvbgkqjxz"))
        words = []
        for i in range(VOCAB_SIZE - len(REASONING)):
            n = 1 + (i % 7)
            words.append(" " + "".join(rng.choice(letters, n)))
        self.strings = np.array(list(REASONING) + words, dtype=object)
        self.char_len = np.array([len(s) for s in self.strings], dtype=np.int64)
        self.ids = rng.choice(ID_SPACE, VOCAB_SIZE, replace=False).astype(np.int32)
        ranks = np.arange(1, VOCAB_SIZE - len(REASONING) + 1, dtype=np.float64)
        p = 1.0 / ranks
        self.word_p = p / p.sum()


def problem_answers(pid: int, n: int, rng: np.random.Generator) -> tuple[Problem, list[str | None]]:
    """A problem and the answers of its n traces (majority 40-90%, ~3% none)."""
    gold = str(100 + pid)
    share = rng.uniform(0.4, 0.9)
    majority = gold if rng.random() < 0.7 else str(900 + pid)
    others = [str(2000 + 10 * pid + k) for k in range(int(rng.integers(2, 9)))]
    if majority != gold:
        others[0] = gold
    rest = rng.dirichlet(np.full(len(others), 0.7)) * (1 - share - 0.03)
    p = np.r_[share, rest, 0.03]
    pick = rng.choice(len(p), n, p=p / p.sum())
    values = [majority, *others, None]
    problem = Problem(dataset="synthetic", problem_id=f"syn-{pid:03d}", question=f"SYNTHETIC problem {pid}",
                      gold=gold, kind=AnswerKind.NUMBER)
    return problem, [values[i] for i in pick]


def trace(vocab: Vocab, pid: str, idx: int, answer: str | None, rng: np.random.Generator) -> TraceRecord:
    """One SYNTHETIC trace with token ids, text, end offsets, log-probs and confidences."""
    n = int(min(MAX_TOKENS, max(200, rng.lognormal(np.log(MEDIAN_TOKENS), SIGMA))))
    finish = FinishReason.LENGTH if n >= MAX_TOKENS else FinishReason.STOP
    words = len(REASONING) + rng.choice(VOCAB_SIZE - len(REASONING), n, p=vocab.word_p)
    reason = rng.random(n) < 1 / 40
    words[reason] = rng.integers(0, len(REASONING), int(reason.sum()))
    strings = list(vocab.strings[words])
    if finish == FinishReason.STOP and answer is not None:
        strings[-1] = f" The answer is \\boxed{{{answer}}}."
    lens = np.fromiter((len(s) for s in strings), dtype=np.int64, count=n)
    near = rng.random(n) < 0.75
    logprobs = -np.where(near, rng.exponential(0.01, n), rng.exponential(1.2, n))
    confidence = np.clip(np.where(near, rng.normal(14, 2, n), rng.normal(6, 2.5, n)), 0.05, 30)
    return TraceRecord(
        problem_id=pid, index=idx, text="".join(strings), token_ids=vocab.ids[words],
        offsets=np.cumsum(lens).astype(np.int32), seed=int(rng.integers(2**62)), finish_reason=finish,
        logprobs=logprobs.astype(np.float32), confidence=confidence.astype(np.float32),
    )


def problem_traces(vocab: Vocab, pid: int, n: int, seed: int):
    """(Problem, iterator over its n SYNTHETIC TraceRecords); seeded by (seed, pid)."""
    rng = np.random.default_rng([seed, pid])
    problem, answers = problem_answers(pid, n, rng)

    def gen():
        for i, a in enumerate(answers):
            yield trace(vocab, problem.problem_id, i, a, rng)

    return problem, gen()
