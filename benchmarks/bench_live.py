"""Live pruning in seconds, not only tokens: every live policy against full generation.

Run by hand (starts vLLM engines; minutes; nothing else should run on the machine):

    .venv/bin/python benchmarks/bench_live.py [--problems 8 --n 64 --max-tokens 128 --dtype float32]

1. `dp generate` samples the reference run (its generation seconds, engine start excluded).
2. One `dp live` session (one AsyncLLM engine; problems admitted while fewer than
   `--max-traces` traces run, default the engine's batch) runs a warm-up (cons, not reported;
   `--no-warmup` skips it), then, on the same problems and seeds: cons (pruning off), DeepPrune keep and resume, DeepConf-high,
   ESC, Adaptive-Consistency (waves of 8) and Slim-SC; then the full generation of the
   same traces in the same engine and window. Each with `--compare` (decisions against
   the simulator in the live order).
3. DeepPrune keep again with other trace budgets (`--budgets`, e.g. 32,128), to show what
   traces in flight buy.

4. Unless `--no-prefill-pass`: every trace of the reference started again in a fresh engine and
   stopped after one token (same admission), which times what a started trace costs whatever a
   policy does later: its prompt's prefill and its set-up. From it and the full generation, each
   policy's *work cut* (traces started x that cost + tokens x the cost of a further token) and its
   wall cut against it: a policy that starts every trace can cut its wall time by at most (1 - the
   started traces' share) x its token cut.

5. Every engine step of step 2's session is logged (`engine_steps.StepLog`, vLLM's stat-logger
   interface): per policy, the steps, the batch (requests running, waiting), prompt tokens prefilled
   (computed, from the prefix cache), tokens generated and idle seconds; a least-squares fit of busy
   seconds on steps, generated tokens and computed prompt tokens over the windows, and what each
   window's fit leaves unexplained (cores taken by dp's own work, e.g. Slim-SC's embeddings, whose
   seconds are `judge_seconds`; dp's process CPU is `process_cpu_seconds`). The raw steps go to
   `<out>_steps.csv`.

6. With `--peer-deepconf` (needs `pip install --no-deps deepconf==0.1.0`), DeepConf's own
   `DeepThinkLLM.deepthink(mode="online")` on the same prompts and sampling settings, one
   problem at a time as it runs (its own seeds), for reference.

Reports tokens, wall seconds, token cut and wall-time cut against the full generation
(and their ratio), accuracy, decisions matched; the engine overhead of `dp live --policy
cons` over `dp generate`; and, from step 2's full generation vs the reference, the
fraction of traces that came out identical in another engine and batch (the dtype's
determinism). JSON to --out, a table to stdout, with the machine and every setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import machine  # noqa: E402
from engine_steps import FIELDS, StepLog, cost_model  # noqa: E402

POLICIES = {  # name -> (policy, mode, extra params)
    "cons": ("cons", "keep", {}),
    "deepprune-keep": ("deepprune", "keep", {"tau": 0.5}),
    "deepprune-resume": ("deepprune", "resume", {"tau": 0.5}),
    "deepconf-high": ("deepconf-high", "keep", {"warmup": 16, "conf_window": 8}),
    "esc": ("esc", "keep", {"window": 8}),
    "adaptive": ("adaptive", "keep", {"wave": 8}),
    "slimsc": ("slimsc", "keep", {"similarity": 0.95, "every": 8}),
}


def query_one(cache_path: str, sql: str, params: list) -> tuple:
    """The first row of one read-only query on the cache file."""
    import duckdb

    con = duckdb.connect(cache_path, read_only=True)
    try:
        return con.execute(sql, params).fetchone()
    finally:
        con.close()


def identical_traces(cache_path: str, a: str, b: str) -> tuple[int, int]:
    """(traces with the same token ids in runs a and b, traces compared)."""
    rows = query_one(cache_path,
                     "SELECT count(*) FILTER (WHERE x.text = y.text AND x.n_tokens = y.n_tokens), count(*) FROM traces x "
                     "JOIN traces y ON x.problem_id = y.problem_id AND x.idx = y.idx WHERE x.run = ? AND y.run = ?",
                     [a, b])
    return int(rows[0]), int(rows[1])


def peer_deepconf(args, cache_path: str, ref: str) -> dict:
    """DeepConf's own online mode (deepconf 0.1.0) on the reference run's problems; its seeds."""
    from deepconf.wrapper import DeepThinkLLM
    from vllm import SamplingParams

    from dp.answers import is_correct
    from dp.cache.store import Cache
    from dp.generate.prompts import build_prompt
    from dp.models import load_tokenizer, resolve_model

    with Cache(cache_path) as cache:
        problems = [p.problem for p in cache.load_run(ref)]
    path = str(resolve_model("smollm2-135m"))
    tok = load_tokenizer(path)
    t0 = time.perf_counter()
    llm = DeepThinkLLM(path, dtype=args.dtype, enforce_eager=True, max_num_seqs=64, seed=0,
                       max_num_batched_tokens=64 * 512, enable_prefix_caching=False)
    start_s = time.perf_counter() - t0
    tokens, correct, t0 = 0, 0, time.perf_counter()
    for p in problems:
        params = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, logprobs=20)
        out = llm.deepthink(build_prompt(tok, p), mode="online", warmup_traces=16, total_budget=args.n,
                            confidence_percentile=90, window_size=8, sampling_params=params)
        tokens += int(out.total_tokens)
        correct += bool(is_correct(out.voted_answer, p.gold, p.kind))
    return {"policy": "peer deepconf 0.1.0 online (percentile 90 = keep top 90%, window 8, warm-up 16)",
            "live_tokens": tokens, "live_seconds": time.perf_counter() - t0, "live_accuracy": correct / len(problems),
            "engine_start_seconds": start_s}


def prefill_pass(cache_path: str, ref: str, dtype: str, max_traces: int) -> dict:
    """Every trace of the reference run started again and stopped after ONE token, in a fresh engine,
    admitted the same way (at most `max_traces` in flight): the work a started trace costs whatever
    happens to it later (its prompt's prefill, the request's set-up and its first token). Timed on the
    second of two passes (the first one in a fresh engine also pays for its first batch shapes)."""
    import asyncio

    from dp.cache.store import Cache
    from dp.generate.prompts import build_prompt
    from dp.generate.sampling import SamplingSpec
    from dp.generate.stream import Stream, StreamEngine

    with Cache(cache_path) as cache:
        info, problems = cache.run_info(ref), cache.load_run(ref)
    spec = SamplingSpec.from_dict(info["sampling"])

    async def session() -> dict:
        engine = StreamEngine(info["model"], dtype=dtype)
        try:
            room = asyncio.Semaphore(max_traces)
            prompt_tokens = 0

            async def one(ids: list[int], seed: int, rid: str) -> None:
                async with room:
                    async for _ in engine.stream(Stream(rid), ids, spec, seed, max_tokens=1):
                        pass

            jobs = []
            for pt in problems:
                ids = engine.tokenizer(build_prompt(engine.tokenizer, pt.problem), add_special_tokens=False)["input_ids"]
                prompt_tokens += len(ids) * len(pt.seeds)
                jobs += [(ids, int(s), f"prefill-{pt.problem.problem_id}-{i}") for i, s in enumerate(pt.seeds)]
            passes = []
            for rep in range(2):  # the first pass in a fresh engine also pays for its first shapes
                t0 = time.perf_counter()
                await asyncio.gather(*(one(ids, seed, f"{rid}-{rep}") for ids, seed, rid in jobs))
                passes.append(time.perf_counter() - t0)
            return {"traces": len(jobs), "prompt_tokens": prompt_tokens, "seconds": passes[-1],
                    "first_pass_seconds": passes[0]}
        finally:
            engine.close()

    return asyncio.run(session())


def traces_started(cache_path: str, run: str) -> int:
    """Traces a live run started (a trace it never started has no row)."""
    return int(query_one(cache_path, "SELECT count(*) FROM traces WHERE run = ?", [run])[0])


def work_model(rows: list[dict], prefill: dict, full_traces: int) -> dict:
    """Split the full generation's wall time into what started traces cost (the prefill pass) and what
    each generated token after the first costs; predict each policy's wall time from its traces started
    and tokens, and its *work cut* (the wall cut that follows from them with the batch kept full)."""
    full = next(r for r in rows if r.get("full_generation_seconds"))
    per_trace = prefill["seconds"] / prefill["traces"]
    per_token = (full["full_generation_seconds"] - prefill["seconds"]) / (full["full_tokens"] - full_traces)
    for r in rows:
        predicted = r["traces_started"] * per_trace + (r["live_tokens"] - r["traces_started"]) * per_token
        r["predicted_seconds"] = predicted
        r["work_cut"] = 1 - predicted / full["full_generation_seconds"]
        r["wall_to_work_cut"] = r["wall_cut"] / r["work_cut"] if r["work_cut"] else None
    return {"seconds_per_started_trace": per_trace, "seconds_per_token": per_token,
            "started_traces_share_of_full": prefill["seconds"] / full["full_generation_seconds"],
            "ceiling_wall_to_token_cut_if_every_trace_starts":
                1 - prefill["seconds"] / full["full_generation_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-traces", type=int, default=None,
                    help="traces in flight that admit problems (default: the engine's batch)")
    ap.add_argument("--max-problems", type=int, default=None, help="also at most this many problems at once")
    ap.add_argument("--budgets", default="", help="extra --max-traces values for DeepPrune keep ('' = none)")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--judge", default="features")
    ap.add_argument("--truncate", default="tokens:8")
    ap.add_argument("--K2", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="out/bench_live.duckdb")
    ap.add_argument("--out", default=None)
    ap.add_argument("--peer-deepconf", action="store_true", help="also run deepconf 0.1.0's own online mode")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the warm-up run (cons, not reported) before the policies in the live session")
    ap.add_argument("--no-prefill-pass", action="store_true",
                    help="skip the pass that times what a started trace costs (its prompt's prefill)")
    args = ap.parse_args()

    from dp.cache.store import Cache
    from dp.simulate.live.run import LiveSettings, run_lives

    where = machine()
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    Path(args.cache).unlink(missing_ok=True)
    ref = f"bench-{args.dtype}"
    gen = [sys.executable, "-m", "dp.cli", "generate", "--cache", args.cache, "--run", ref, "--limit",
           str(args.problems), "--n", str(args.n), "--max-tokens", str(args.max_tokens), "--seed", str(args.seed),
           "--dtype", args.dtype, "--enforce-eager", "--batch", str(args.n * args.problems), "--no-progress", "--json"]
    t0 = time.perf_counter()
    r = subprocess.run(gen, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if r.returncode:
        sys.exit(f"dp generate failed: {r.stderr.strip().splitlines()[-1:]}")
    generated = json.loads(r.stdout)
    generated["process_seconds"] = time.perf_counter() - t0

    def settings(key: str, budget: int | None, compare: bool = True, name: str | None = None) -> LiveSettings:
        policy, mode, params = POLICIES[key]
        if policy == "deepprune":
            params = {**params, "K2": args.K2}
        return LiveSettings(reference_run=ref, live_run=name or f"{ref}-{key}-t{budget or 'batch'}", policy=policy,
                            params=params, judge=args.judge, truncate=args.truncate, mode=mode,
                            max_in_flight=args.max_problems, max_traces=budget, dtype=args.dtype, seed=args.seed,
                            compare=compare, replace=True)

    chosen = [p for p in args.policies.split(",") if p]
    steps = StepLog()  # every engine step of the main session, to say where each policy's time went
    with Cache(args.cache, write=True) as cache:
        t0 = time.perf_counter()
        # a warm-up first (cons, not reported): an engine's first passes are slower, and the first
        # policy run would otherwise pay for them against the full generation, run last
        warm = [] if args.no_warmup else [settings("cons", args.max_traces, compare=False, name=f"{ref}-warmup")]
        main_runs = run_lives(cache, warm + [settings(k, args.max_traces) for k in chosen], progress=False,
                              stat_loggers=[steps])[len(warm):]
        session_s = time.perf_counter() - t0
        windows = []
        for w in [int(x) for x in args.budgets.split(",") if x]:
            windows += run_lives(cache, [settings("deepprune-keep", w)], progress=False)
    peer = peer_deepconf(args, args.cache, ref) if args.peer_deepconf else None
    prefill = (None if args.no_prefill_pass else
               prefill_pass(args.cache, ref, args.dtype, main_runs[0]["max_traces_in_flight"]))
    # cons lets every trace run to the end in another engine (AsyncLLM) and other batches than the reference
    same, total = (identical_traces(args.cache, ref, f"{ref}-cons-t{args.max_traces or 'batch'}") if "cons" in chosen
                   else (None, None))
    keys = ("policy", "mode", "max_traces_in_flight", "peak_traces_in_flight", "max_problems_in_flight", "live_tokens", "live_seconds", "full_tokens",
            "full_generation_seconds", "token_cut", "wall_cut", "wall_to_token_cut", "live_accuracy",
            "decisions_matched", "decisions_total", "judge_seconds", "judge_pairs", "process_cpu_seconds", "dtype")
    rows = [{k: o.get(k) for k in keys} for o in main_runs + windows]
    for row, o in zip(rows, main_runs + windows, strict=True):
        row["traces_started"] = traces_started(args.cache, o["live_run"])
    engine_profile = {o["policy"] + "-" + o["mode"]: steps.summary(*o["live_window"]) for o in main_runs}
    if main_runs and main_runs[0].get("full_generation_window"):
        engine_profile["full generation"] = steps.summary(*main_runs[0]["full_generation_window"])
    costs = cost_model(engine_profile)
    model = work_model(rows, prefill, generated["traces"]) if prefill else None
    cons = next((o for o in main_runs if o["policy"] == "cons"), None)
    report = {
        "machine": where, "settings": vars(args), "reference_run": ref,
        "generate": {k: generated.get(k) for k in ("traces", "tokens", "seconds", "tokens_per_s")},
        "generate_process_seconds": generated["process_seconds"], "live_session_seconds": session_s,
        "rows": rows, "engine_profile": engine_profile, "engine_cost_model": costs, "peer_deepconf": peer,
        "prefill_pass": prefill,
        "work_model": model,
        "cons_overhead": (cons["live_seconds"] / generated["seconds"] - 1) if cons else None,
        "cons_identical_to_reference": None if same is None else {"identical": same, "traces": total},
    }
    out = Path(args.out or f"results/bench_live_{args.dtype}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    steps_csv = out.with_name(out.stem + "_steps.csv")  # every engine step of the main session
    np.savetxt(steps_csv, np.array(steps.rows).reshape(-1, len(FIELDS)), delimiter=",", header=",".join(FIELDS),
               comments="", fmt="%.6f")
    print(f"machine: {where}; now load {os.getloadavg()[0]:.2f}")
    print(f"{args.problems} arith problems x n={args.n}, max_tokens {args.max_tokens}, dtype {args.dtype}, "
          f"seed {args.seed}, judge {args.judge}, truncate {args.truncate}, K2 {args.K2}")
    print(f"dp generate: {generated['tokens']} tokens in {generated['seconds']:.1f} s "
          f"({generated['tokens_per_s']} tok/s, engine start excluded)")
    cols = ("policy", "mode", "max_traces_in_flight", "peak_traces_in_flight", "traces_started", "live_tokens",
            "live_seconds", "full_generation_seconds", "token_cut", "wall_cut", "wall_to_token_cut")
    cols += ("work_cut", "wall_to_work_cut") if model else ()
    cols += ("live_accuracy", "decisions_matched", "decisions_total")
    print("  ".join(cols))
    for row in rows:
        print("  ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols))
    if model:
        print(f"prefill pass: {prefill['traces']} traces ({prefill['prompt_tokens']} prompt tokens), one token "
              f"each, in {prefill['seconds']:.1f} s = {model['seconds_per_started_trace'] * 1e3:.0f} ms a started "
              f"trace, {model['started_traces_share_of_full']:.0%} of the full generation; "
              f"{model['seconds_per_token'] * 1e3:.1f} ms a further token. A policy that starts every trace "
              f"cuts at most {model['ceiling_wall_to_token_cut_if_every_trace_starts']:.2f} x its token cut "
              f"from the wall time")
    print("engine steps (time-weighted requests running; busy = some request running or waiting):")
    pcols = ("steps", "busy_seconds", "idle_seconds", "step_seconds_median", "running_mean", "waiting_mean",
             "prompt_tokens_computed", "prompt_tokens_cached", "generated_tokens", "busy_ms_per_generated_token")
    print("  ".join(("run",) + pcols + ("predicted_busy_seconds", "unexplained_seconds")))
    for name, p in engine_profile.items():
        p = {**p, **costs.get("windows", {}).get(name, {})}
        print("  ".join([name] + [f"{p.get(c):.3f}" if isinstance(p.get(c), float) else str(p.get(c))
                                  for c in pcols + ("predicted_busy_seconds", "unexplained_seconds")]))
    if costs:
        print(f"engine cost fit: {costs['seconds_per_step'] * 1e3:.1f} ms a step + "
              f"{costs['seconds_per_generated_token'] * 1e3:.2f} ms a generated token + "
              f"{costs['seconds_per_prompt_token_computed'] * 1e3:.2f} ms a prompt token computed")
    if peer:
        print(f"{peer['policy']}: {peer['live_tokens']} tokens in {peer['live_seconds']:.1f} s, "
              f"accuracy {peer['live_accuracy']:.3f}")
    if cons:
        print(f"dp live --policy cons overhead over dp generate: {report['cons_overhead']:+.1%}")
    if same is not None:
        print(f"cons live traces identical to the reference: {same}/{total}")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
