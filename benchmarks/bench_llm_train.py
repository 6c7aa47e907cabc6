"""Seconds per optimiser step of the llm judge's fine-tune, by what is trained (run by hand, under the lock).

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_llm_train.py --cache out/loro.duckdb \
        --out results/bench_llm_train.json

Pairs: the real pooled training mix of the leave-one-run-out protocol (`esc` tokens:30,
`qwen` tokens:100, `arith20-n128` tokens:8, at most 8 pairs per problem, seed 0), each
prefix cut to `max_trace_tokens`. For every configuration: load SmolLM2-135M fp32, one
warm-up step, then `--steps` timed steps of `batch_size` pairs (focal loss, AdamW).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-trace-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from dp.cache import Cache
    from dp.judge.finetune import finetune
    from dp.judge.llm import LLMJudge, load_lm
    from dp.judge.llm_train import LLMTrainSettings, choose_trainable
    from dp.judge.pairs import PairSet, build_pairs
    from dp.models import resolve_model
    from dp.provenance import stamp

    torch.set_num_threads(2)
    with Cache(args.cache) as c:
        pairs = PairSet.concat([build_pairs(c, r, k, 8, 0, 2) for r, k in
                                (("esc", "tokens:30"), ("qwen", "tokens:100"), ("arith20-n128", "tokens:8"))])
    configs = {"all weights": {}, "top 2 layers": {"train_layers": 2}, "top 4 layers": {"train_layers": 4},
               "LoRA r=8, all layers": {"lora_r": 8}, "LoRA r=8, top 4 layers": {"lora_r": 8, "train_layers": 4}}
    rows = []
    for name, extra in configs.items():
        s = LLMTrainSettings(steps=args.steps + 1, batch_size=args.batch_size, max_trace_tokens=args.max_trace_tokens,
                             warmup=0.0, **extra)
        model, tok = load_lm(resolve_model(s.model), s)
        choose_trainable(model, s)
        judge = LLMJudge(model, tok, s.judge_settings())
        cut = {}
        times: list[float] = []

        def logits(idx, swap, judge=judge, cut=cut, times=times):
            times.append(time.perf_counter())
            prompts = []
            for r in idx.tolist():
                a, b = pairs.left[r].text, pairs.right[r].text
                for t in (a, b):
                    cut.setdefault(t, judge.cut([t])[0])
                prompts.append(judge.prompt_ids(cut[a], cut[b]))
            return judge.logits(prompts)

        rows_idx = np.arange(pairs.n)
        t0 = time.perf_counter()
        finetune(model, logits, pairs.labels, rows_idx, s, 0, "bench")
        end = time.perf_counter()
        per_step = (end - times[1]) / args.steps  # the first step is the warm-up
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        rows.append({"trained": name, "trainable_params": trainable, "s_per_step": round(per_step, 2),
                     "total_s": round(end - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
        del model, judge
    result = {"rows": rows, "steps": args.steps, "batch_size": args.batch_size,
              "max_trace_tokens": args.max_trace_tokens, "pairs": pairs.n, "threads": torch.get_num_threads(),
              **stamp()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
