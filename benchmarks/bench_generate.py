"""Generation throughput: dp's VLLMEngine vs raw vLLM, and vLLM vs transformers.

Run by hand (it starts a vLLM engine, ~20-90 s, and uses every core):

    .venv/bin/python benchmarks/bench_generate.py [--problems 4 --n 8 --max-tokens 128]

Rows: `dp generate_run` (VLLMEngine, writing each batch into a DuckDB cache as
`dp generate` does) against `LLM.generate` on the very same requests (same
prompts, seeds, log-probs), `--repeats` pairs in the order dp, raw, raw, dp,
dp, raw, ... (ABBA: a drift of the machine over the runs falls on both sides
alike, and neither side always goes first); the median of each side is compared. dp's own work inside its run (record building and the
cache write) is timed on its own, and each run's CPU is split into the main process's and the engine
processes' (which side does the extra work when dp is slower). Then raw `LLM.generate` without log-probs, and
TransformersEngine on a few of the same traces. Prints a table with the machine
and the settings. Stores nothing outside a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} cpus ({model}), load {load:.2f} at start"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--compile", action="store_true", help="let vLLM torch.compile (slower start)")
    ap.add_argument("--dtype", default=None, help="vLLM dtype (default: float32 on the CPU)")
    ap.add_argument("--repeats", type=int, default=4, help="dp / raw pairs, in ABBA order")
    ap.add_argument("--tf-traces", type=int, default=4, help="traces for the transformers row (0: skip)")
    ap.add_argument("--tf-threads", type=int, default=None)
    args = ap.parse_args()

    from dp.generate.engines import TransformersEngine, VLLMEngine
    from dp.generate.runner import build_jobs, generate_run
    from dp.generate.sampling import SamplingSpec
    from dp.problems import load_dataset

    problems = load_dataset("arith")[: args.problems]
    spec = SamplingSpec(n=args.n, max_tokens=args.max_tokens, seed=0)
    rows = []  # (what, traces, tokens, seconds)
    where = machine()

    engine, load_s = timed(lambda: VLLMEngine(args.model, enforce_eager=not args.compile, dtype=args.dtype))
    settings = engine.settings()
    warm = SamplingSpec(n=2, max_tokens=8, seed=99)
    generate_run(engine, problems[:1], warm, set(), lambda r: None, progress=False)  # first-call costs

    import statistics
    import tempfile

    from vllm import SamplingParams

    from dp.cache.store import Cache, RunInfo

    jobs = build_jobs(engine.tokenizer, problems, spec)
    prompts, params = engine.requests(jobs, spec)
    own = {"records_s": 0.0, "write_s": 0.0}
    records_of = engine._records

    def timed_records(*a, **kw):  # dp's per-trace work on the engine's outputs, timed apart
        t0 = time.perf_counter()
        out = list(records_of(*a, **kw))
        own["records_s"] += time.perf_counter() - t0
        return iter(out)

    engine._records = timed_records
    import psutil

    me = psutil.Process()

    def cpu_split() -> tuple[float, float]:
        """(this process's CPU seconds, its child processes' (the engine core's)), so far."""
        kids = 0.0
        for c in me.children(recursive=True):
            try:
                t = c.cpu_times()
                kids += t.user + t.system
            except psutil.Error:
                pass
        t = me.cpu_times()
        return t.user + t.system, kids

    cpu = {"dp": [], "raw": []}  # per run: (main-process CPU s, engine-process CPU s)

    def metered(side: str, fn):
        a = cpu_split()
        out = fn()
        b = cpu_split()
        cpu[side].append((b[0] - a[0], b[1] - a[1]))
        return out

    dp_s, raw_s, tokens = [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        def dp_run(rep: int) -> dict:
            with Cache(f"{tmp}/b{rep}.duckdb", write=True) as cache:
                cache.create_run(RunInfo(run="b", model=args.model, engine="bench", tokenizer=args.model,
                                         source="generate", dataset="arith", n=spec.n, seed=0,
                                         sampling=spec.to_dict()))
                cache.add_problems("b", problems)

                def sink(records):
                    t0 = time.perf_counter()
                    cache.write_traces("b", records)
                    own["write_s"] += time.perf_counter() - t0

                return generate_run(engine, problems, spec, set(), sink, progress=False, batch_traces=10**6)

        def raw_run() -> None:
            outs, dt = metered("raw", lambda: timed(lambda: engine.llm.generate(prompts, params, use_tqdm=False)))
            raw_s.append(dt)
            assert sum(len(o.outputs[0].token_ids) for o in outs) == tokens  # the very same tokens (fp32)

        for rep in range(args.repeats):  # pairs dp, raw / raw, dp / dp, raw ... (pair 0 gives `tokens` first)
            if rep % 2:
                raw_run()
            stats = metered("dp", lambda rep=rep: dp_run(rep))
            dp_s.append(stats["seconds"])
            tokens = stats["tokens"]
            if not rep % 2:
                raw_run()
    rows.append((f"dp generate_run, median of {args.repeats}", len(jobs), tokens, statistics.median(dp_s)))
    rows.append((f"raw LLM.generate, median of {args.repeats}", len(jobs), tokens, statistics.median(raw_s)))
    plain = [SamplingParams(temperature=spec.temperature, top_p=spec.top_p, max_tokens=spec.max_tokens,
                            seed=j.seed) for j in jobs]
    outs, dt = timed(lambda: engine.llm.generate(prompts, plain, use_tqdm=False))
    rows.append(("raw LLM.generate, no log-probs", len(outs), sum(len(o.outputs[0].token_ids) for o in outs), dt))
    engine.close()

    if args.tf_traces:
        tf, tf_load = timed(lambda: TransformersEngine(args.model, threads=args.tf_threads))
        tf_jobs = jobs[:: max(1, len(jobs) // args.tf_traces)][: args.tf_traces]
        recs, dt = timed(lambda: list(tf.generate(tf_jobs, spec)))
        rows.append((f"TransformersEngine ({tf.settings()['threads']} threads)", len(recs),
                     sum(r.n_tokens for r in recs), dt))

    print(f"\nmachine: {where}; now load {os.getloadavg()[0]:.2f}")
    print(f"model {args.model}; {len(problems)} arith problems x n={spec.n}, max_tokens={spec.max_tokens}, "
          f"T={spec.temperature}, top_p={spec.top_p}, top-{spec.topk_logprobs} log-probs")
    print(f"vLLM settings: {settings}; load {load_s:.1f} s"
          + (f"; transformers load {tf_load:.1f} s" if args.tf_traces else ""))
    print(f"\n{'what':<40} {'traces':>6} {'tokens':>7} {'seconds':>8} {'tok/s':>7}")
    for what, n, tok, s in rows:
        print(f"{what:<40} {n:>6} {tok:>7} {s:>8.2f} {tok / s:>7.1f}")
    print(f"\neach run, dp: {', '.join(f'{x:.2f}' for x in dp_s)} s; raw: {', '.join(f'{x:.2f}' for x in raw_s)} s")
    print(f"dp generate throughput / raw LLM.generate (medians): {statistics.median(raw_s) / statistics.median(dp_s):.1%}")
    for side in ("dp", "raw"):
        main_s, eng_s = (statistics.median(x) for x in zip(*cpu[side], strict=True))
        print(f"CPU per run, {side}: main process {main_s:.2f} s, engine processes {eng_s:.2f} s (medians)")
    per = 1e6 / max(tokens * args.repeats, 1)
    print(f"dp's own work inside its runs: records {own['records_s'] * per:.2f} us/token + cache write "
          f"{own['write_s'] * per:.2f} us/token ({(own['records_s'] + own['write_s']) / sum(dp_s):.2%} of dp's time)")


if __name__ == "__main__":
    main()
