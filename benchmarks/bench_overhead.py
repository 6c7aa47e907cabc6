"""dp's own CPU time per generated token, with the engine taken out, on each path (issue 26).

Each case runs in its own process (its peak RSS is its own) on a SYNTHETIC cache
(`overhead_data.py`: real SmolLM2 token ids, paper-shaped answers, top-20 filled):

    generate   `build_record` (text, offsets, confidence from the top-20) and
               `Cache.write_traces`, per token, on the raw arrays an engine hands over
    live:P     `dp live`'s per-delta work for policy P (arrival detection, token
               confidence, DeepConf's monitor, the policy, the judge calls, the
               records at the end) on the trace-driven engine
               (`dp.generate.replay_engine`, a stand-in for a GPU's pace, run as fast
               as dp takes its outputs): process CPU time minus the stand-in's own
               output-making time, per token the engine produced; then the live
               traces stored (`store`, per token)
    serve      `dp serve --engine replay`: 64 concurrent requests of n = 64; the
               server's CPU time per token served (stand-in included: an upper
               bound), latency p50/p99, requests lost; then 32 requests one at a
               time: the server's CPU per request less the stand-in's (`/health`
               reports it), p50/p99 (dp's own overhead per request)

Sizes (N traces x L tokens, one problem unless said): `small` (what `make bench`
runs, < 2 min): 64 x 128 (2 problems) and 64 x 4096; `medium` adds 512 x 4096
and 64 x 32768; `large` adds 512 x 32768. `tok/s one core` = 1e6 / (us per token).
Run (engine-free, but CPU-heavy: under the shared lock on a shared machine):

    .venv/bin/python benchmarks/bench_overhead.py [--size small|medium|large] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SIZES = {"small": [(64, 128, 2), (64, 4096, 1)],
         "medium": [(64, 128, 2), (64, 4096, 1), (512, 4096, 1), (64, 32768, 1)],
         "large": [(64, 128, 2), (64, 4096, 1), (512, 4096, 1), (64, 32768, 1), (512, 32768, 1)]}
RUN = "overhead"
POLICIES = {  # name: (policy, settings, judge)
    "cons": ("cons", {}, None),
    "deepprune-jaccard": ("deepprune", {}, "jaccard"),
    "deepprune-features": ("deepprune", {}, "features"),
    "deepconf-high": ("deepconf-high", {}, None),
    "esc": ("esc", {}, None),
}
TRUNCATE = "words:25"


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def case_generate(path: str, n: int, length: int, count: int, seed: int) -> dict:
    """Write the SYNTHETIC run; time build_record and write_traces separately."""
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from overhead_data import K, TokenVocab, problems, raw_trace

    from dp.cache.store import Cache, RunInfo
    from dp.generate.records import TokenText, build_record
    from dp.generate.sampling import SamplingSpec
    from dp.models import load_tokenizer
    from dp.seeds import trace_seed
    from dp.types import FinishReason

    tok = load_tokenizer("smollm2-135m")
    vocab, tt = TokenVocab(tok), TokenText(tok)
    spec = SamplingSpec(n=n, max_tokens=length, seed=seed, topk_logprobs=K)
    build_s = write_s = 0.0
    tokens = 0
    with Cache(path, write=True) as c:
        c.create_run(RunInfo(run=RUN, model="smollm2-135m", engine="synthetic", tokenizer="smollm2-135m",
                             source="generate", dataset="synthetic", n=n, seed=seed, sampling=spec.to_dict(),
                             settings={"SYNTHETIC": True, "made_by": "benchmarks/bench_overhead.py"}), replace=True)
        for problem, answers in problems(count, n, seed):
            c.add_problems(RUN, [problem])
            rng = np.random.default_rng([seed, int(problem.problem_id[4:]), 2])
            for a in range(0, n, 64):
                raws = [raw_trace(vocab, length, ans, rng) for ans in answers[a: a + 64]]
                t0 = time.process_time()
                recs = [build_record(problem_id=problem.problem_id, index=a + i, seed=trace_seed(seed, problem.problem_id, a + i),
                                     finish_reason=FinishReason.STOP if answers[a + i] else FinishReason.LENGTH, k=K,
                                     store_topk=False, token_text=tt, **raw) for i, raw in enumerate(raws)]
                t1 = time.process_time()
                c.write_traces(RUN, recs)
                write_s += time.process_time() - t1
                build_s += t1 - t0
                tokens += sum(r.n_tokens for r in recs)
                del raws, recs
            c.assign_classes(RUN, [problem.problem_id])
    return {"tokens": tokens, "build_us_per_token": 1e6 * build_s / tokens, "write_us_per_token": 1e6 * write_s / tokens,
            "us_per_token": 1e6 * (build_s + write_s) / tokens, "peak_rss_gib": peak_gib()}


def case_live(path: str, name: str, seed: int, check: bool) -> dict:
    """One policy on the trace-driven stand-in, problem after problem; dp's CPU = process CPU - stand-in's."""
    from dp.cache.live import write_live_rows
    from dp.cache.store import Cache, RunInfo
    from dp.generate.replay_engine import replay_stream_engine
    from dp.generate.sampling import SamplingSpec
    from dp.judge.base import load_judge
    from dp.judge.truncation import TruncationRule
    from dp.simulate.live.problem import compare, run_problem
    from dp.simulate.policies.registry import make_policy

    pname, params, jname = POLICIES[name]
    out: dict = {}
    with Cache(path, write=True) as cache:
        spec = SamplingSpec.from_dict(cache.run_info(RUN)["sampling"])
        todo = cache.load_run(RUN)
        policy = make_policy(pname, **params, accounting="concurrent")
        judge = load_judge(jname, seed=seed) if jname else None
        rule = TruncationRule.parse(TRUNCATE)

        async def main():
            engine = replay_stream_engine(cache, RUN)
            import vllm.inputs  # noqa: F401 - imports outside the timed part
            import vllm.v1.engine.output_processor  # noqa: F401

            lives = []
            c0, w0 = time.process_time(), time.perf_counter()
            for pt in todo:
                lives.append(await run_problem(engine, policy, judge, rule, pt.problem, [int(x) for x in pt.seeds],
                                               spec, "keep", seed))
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            busy, made = engine.engine.busy_s, engine.engine.tokens
            engine.close()
            return lives, cpu, wall, busy, made

        lives, cpu, wall, busy, made = asyncio.run(main())
        tokens = int(sum(int(lv.tokens.sum()) for lv in lives))
        t0 = time.process_time()
        ref = cache.run_info(RUN)
        cache.create_run(RunInfo(run="overhead-live", model=ref["model"], engine="replay", tokenizer=ref["tokenizer"],
                                 source="live", dataset=ref["dataset"], n=ref["n"], seed=ref["seed"],
                                 sampling=ref["sampling"]), replace=True)
        cache.add_problems("overhead-live", [pt.problem for pt in todo])
        for lv in lives:  # the live traces and rows, as dp live stores them
            with cache.transaction():
                cache.write_traces("overhead-live", lv.records)
                write_live_rows(cache, "overhead-live", lv.problem_id, list(range(len(lv.records))),
                                ["finish" if f else "prune" for f in lv.finished],
                                [int(x) for x in lv.decision_token], [int(x) for x in lv.tokens])
        store_s = time.process_time() - t0
        out = {"tokens": tokens, "engine_tokens": made, "reference_tokens": int(sum(int(p.lengths.sum()) for p in todo)),
               "cpu_s": cpu, "standin_cpu_s": busy, "wall_s": wall, "us_per_token": 1e6 * (cpu - busy) / max(made, 1),
               "standin_us_per_token": 1e6 * busy / max(made, 1), "store_us_per_token": 1e6 * store_s / max(tokens, 1),
               "judge_pairs": int(sum(lv.judge_pairs for lv in lives)),
               "judge_s": float(sum(lv.judge_seconds for lv in lives)), "peak_rss_gib": peak_gib()}
        if check:
            from dp.simulate.replay.context import build_contexts

            contexts = build_contexts(cache, RUN, rule, judge, confidence=getattr(policy, "needs_confidence", False))
            res = compare(contexts, policy, lives, seed)
            out.update(decisions_matched=res["decisions_matched"], decisions_total=res["decisions_total"])
    return out


def case_serve(path: str, requests: int, n: int, sequential: int = 32) -> dict:
    """`dp serve --engine replay` on the run; `requests` concurrent requests of n traces each, then
    `sequential` requests one at a time for dp's own CPU per request (the stand-in's subtracted)."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from dp.cache.store import Cache

    with Cache(path) as c:
        questions = [p.problem.question for p in c.load_run(RUN)]
        model = c.run_info(RUN)["model"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dp = str(Path(sys.executable).parent / "dp")
    proc = subprocess.Popen([dp, "serve", "--engine", "replay", "--run", RUN, "--cache", path, "--port", str(port),
                             "--n", str(n), "--judge", "jaccard", "--truncate", TRUNCATE,
                             "--max-concurrent", str(requests)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("error: dp serve did not start")

        def cpu() -> float:
            f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        def ask(i: int):
            body = {"model": model, "messages": [{"role": "user", "content": questions[i % len(questions)]}], "n": n,
                    "seed": i}
            t0 = time.perf_counter()
            r = httpx.post(base + "/v1/chat/completions", json=body, timeout=600)
            ok = r.status_code == 200
            return r.status_code, time.perf_counter() - t0, r.json()["usage"]["completion_tokens"] if ok else 0, \
                None if ok else r.text[:300]

        def standin() -> float:
            return float(httpx.get(base + "/health", timeout=10).json().get("standin_busy_s", 0.0))

        ask(requests)  # warm-up: the first request imports vLLM's output classes
        c0, w0 = cpu(), time.perf_counter()
        with ThreadPoolExecutor(requests) as ex:
            got = list(ex.map(ask, range(requests)))
        wall, used = time.perf_counter() - w0, cpu() - c0
        # one request at a time: the server's CPU for each, less the stand-in's own (dp's overhead per request)
        own = []
        for i in range(sequential):
            c0, b0 = cpu(), standin()
            ask(requests + 1 + i)
            own.append(cpu() - c0 - (standin() - b0))
    finally:
        proc.terminate()
        proc.wait(60)
    import numpy as np

    lat = np.array([g[1] for g in got])
    tokens = sum(g[2] for g in got)
    return {"requests": requests, "n": n, "answered": sum(g[0] == 200 for g in got), "tokens": tokens,
            "wall_s": wall, "server_cpu_s": used, "us_per_token_with_standin": 1e6 * used / max(tokens, 1),
            "latency_p50_s": float(np.percentile(lat, 50)), "latency_p99_s": float(np.percentile(lat, 99)),
            "server_cpu_per_request_ms": 1e3 * used / requests,
            "sequential_requests": sequential, "own_cpu_ms_p50": 1e3 * float(np.percentile(own, 50)),
            "own_cpu_ms_p99": 1e3 * float(np.percentile(own, 99)),
            "first_error": next((g[3] for g in got if g[3]), None)}


def child(args) -> None:
    kind = args.case
    if kind == "generate":
        res = case_generate(args.cache, args.n, args.length, args.problems, args.seed)
    elif kind == "serve":
        res = case_serve(args.cache, 64, 64)
    else:
        res = case_live(args.cache, kind.split(":", 1)[1], args.seed, args.check)
    print(json.dumps(res))


def run_case(case: str, cache: Path, n: int, length: int, count: int, seed: int, check: bool) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--cache", str(cache), "--n", str(n), "--length", str(length),
           "--problems", str(count), "--seed", str(seed)] + (["--check"] if check else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if r.returncode != 0:
        raise SystemExit(f"error: case {case} at {n} x {length} failed: {(r.stderr.strip().splitlines() or [''])[-1]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", help=f"{', '.join(SIZES)}, or NxL[xP] (e.g. 512x32768)")
    ap.add_argument("--out", default="out/overhead")
    ap.add_argument("--json", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="also replay dp simulate and count equal decisions")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--no-serve", action="store_true")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--problems", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        return child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"# bench_overhead --size {args.size} on {platform.node()} ({os.cpu_count()} cores, {platform.processor()})")
    print(f"{'N':>4} {'L':>6} {'path':<22} {'us/token':>9} {'tok/s 1 core':>13} {'peak GiB':>8}  notes")
    if args.size in SIZES:
        sizes = SIZES[args.size]
    else:
        try:
            parts = [int(x) for x in args.size.split("x")]
            sizes = [(parts[0], parts[1], parts[2] if len(parts) > 2 else 1)]
        except (ValueError, IndexError):
            raise SystemExit(f"error: --size must be one of {', '.join(SIZES)} or NxL[xP], got {args.size!r}") from None
    for n, length, count in sizes:
        cache = out / f"ov-{n}x{length}.duckdb"
        for p in (cache, Path(str(cache) + ".wal")):
            p.unlink(missing_ok=True)
        cases = ["generate"] + [f"live:{p}" for p in args.policies.split(",") if p]
        if (n, length) == (64, 128) and not args.no_serve:
            cases.append("serve")
        for case in cases:
            r = run_case(case, cache, n, length, count, args.seed, args.check)
            us = r.get("us_per_token", r.get("us_per_token_with_standin"))
            note = ""
            if case == "generate":
                note = f"build {r['build_us_per_token']:.2f} + write {r['write_us_per_token']:.2f} us/token"
            elif case == "serve":
                note = (f"{r['answered']}/{r['requests']} answered, p50 {r['latency_p50_s']:.2f} s, p99 "
                        f"{r['latency_p99_s']:.2f} s, {r['server_cpu_per_request_ms']:.0f} ms CPU/request (stand-in incl.); "
                        f"one at a time, dp's own CPU/request p50 {r['own_cpu_ms_p50']:.0f} ms, "
                        f"p99 {r['own_cpu_ms_p99']:.0f} ms")
            else:
                note = (f"{r['engine_tokens']} of {r['reference_tokens']} tokens, stand-in {r['standin_us_per_token']:.1f} "
                        f"us/token, {r['judge_pairs']} pairs")
                if "decisions_total" in r:
                    note += f", decisions = simulate {r['decisions_matched']}/{r['decisions_total']}"
            print(f"{n:>4} {length:>6} {case:<22} {us:>9.2f} {1e6 / us:>13,.0f} {r['peak_rss_gib']:>8.2f}  {note}"
                  if "peak_rss_gib" in r else
                  f"{n:>4} {length:>6} {case:<22} {us:>9.2f} {1e6 / us:>13,.0f} {'':>8}  {note}", flush=True)
            rows.append({"n": n, "length": length, "case": case, **r})
        for p in (cache, Path(str(cache) + ".wal")):
            p.unlink(missing_ok=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "machine": platform.node(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
