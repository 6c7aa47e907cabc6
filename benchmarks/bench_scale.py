"""Paper scale on one machine: every stage of `dp` timed, with its peak memory, at 3 sizes.

Builds a SYNTHETIC paper-shaped cache (30 problems x N traces of thousands of
tokens, `scale_data.py`; the run is named `synthetic-scale` and its model
`SYNTHETIC`) through the writer `dp generate` uses (`Cache.write_traces`, batches
of 64 traces), then runs each stage as its own process and records its wall time
and peak RSS (`os.wait4`):

    write     the writer alone (seconds inside `write_traces`; generation excluded)
    info      dp cache info
    pairs     dp judge pairs, words:25 and tokens:512
    eval      dp judge eval --judge jaccard (words:25 and tokens:512, --max-pairs per problem)
    sweep     dp simulate, every policy, tau 0.05:0.95:0.05 x 50 orders, jaccard at words:25:
              once cold (scores the pairs it needs) and once warm (scores cached)
    figures   dp figures --judge jaccard

`--scale 1/16|1/4|full` sets N = 32, 128, 512 (30 problems each; ~100 M tokens at
full; 1/64, N = 8, is a smoke size); `--scale all` runs the three and prints the growth exponent of each step
(log-log slope of seconds against tokens). `--steps` runs only some steps (on the cache
an earlier run left, with `--reuse`), merging them into the `--json` file, so a full-size
run can be split into short jobs. Run by hand:

    .venv/bin/python benchmarks/bench_scale.py --scale 1/16 [--out DIR] [--json FILE]
    .venv/bin/python benchmarks/bench_scale.py --scale full --reuse --steps sweep --json FILE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

RUN = "synthetic-scale"
SCALES = {"1/64": 8, "1/16": 32, "1/4": 128, "full": 512}  # 1/64: a smoke size
PROBLEMS = 30
TAUS = "tau=0.05:0.95:0.05"
POLICIES = ("cons", "deepprune", "deepprune-oracle", "deepconf-low", "deepconf-high", "esc", "adaptive", "random")
TARGETS = {"write_tokens_per_s": 200_000, "bytes_per_token": 10.0, "info_s": 10.0, "sweep_warm_s": 60.0,
           "peak_rss_gib": 4.0}


def write_cache(path: str, problems: int, n: int, seed: int, batch: int = 64) -> dict:
    """Generate SYNTHETIC traces problem by problem and write them in batches; time the writer only."""
    sys.path.insert(0, str(Path(__file__).parent))
    import numpy as np
    from scale_data import Vocab, problem_traces

    from dp.cache.store import Cache, RunInfo

    vocab = Vocab(np.random.default_rng(seed))
    write_s = gen_s = 0.0
    tokens = traces = 0
    with Cache(path, write=True) as cache:
        cache.create_run(RunInfo(
            run=RUN, model="SYNTHETIC", engine="synthetic", tokenizer="SYNTHETIC", source="synthetic",
            dataset="synthetic", n=n, seed=seed, settings={"SYNTHETIC": True, "made_by": "benchmarks/bench_scale.py"},
        ), replace=True)
        for pid in range(problems):
            problem, gen = problem_traces(vocab, pid, n, seed)
            cache.add_problems(RUN, [problem])
            while True:
                t0 = time.perf_counter()
                records = [r for _, r in zip(range(batch), gen, strict=False)]
                t1 = time.perf_counter()
                gen_s += t1 - t0
                if not records:
                    break
                cache.write_traces(RUN, records)
                write_s += time.perf_counter() - t1
                tokens += sum(r.n_tokens for r in records)
                traces += len(records)
        t0 = time.perf_counter()
        cache.con.execute("CHECKPOINT")
        write_s += time.perf_counter() - t0
    return {"tokens": tokens, "traces": traces, "write_s": write_s, "generate_s": gen_s,
            "write_tokens_per_s": tokens / write_s}


def run_step(cmd: list[str], env: dict) -> dict:
    """Run one stage under a wrapper process that reports the stage's own peak RSS via wait4."""
    wrapper = [sys.executable, __file__, "_step", "--", *cmd]
    t0 = time.perf_counter()
    res = subprocess.run(wrapper, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t0
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SystemExit(f"error: step failed ({' '.join(cmd[1:4])} ...): {last}")
    report = json.loads(res.stdout.strip().splitlines()[-1])
    report["wrapper_seconds"] = secs
    return report


def step_main(cmd: list[str]) -> None:
    """Inside the wrapper: run cmd, print {'seconds', 'peak_rss_gib', 'stdout'} as the last line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate()
    secs = time.perf_counter() - t0
    import resource

    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(proc.returncode)
    print(json.dumps({"seconds": secs, "peak_rss_gib": rss_kib / 2**20, "stdout": out}))


def _dp() -> str:
    exe = Path(sys.executable).parent / "dp"
    return str(exe) if exe.exists() else shutil.which("dp") or "dp"


STEPS = ("write", "info", "sweep", "pairs", "eval", "figures")


def bench_size(label: str, out: Path, seed: int, max_pairs: int, json_out: str | None, done: dict,
               only: tuple[str, ...] = STEPS, reuse: bool = False) -> dict:
    n = SCALES[label]
    out.mkdir(parents=True, exist_ok=True)
    cache = out / f"scale-{label.replace('/', 'of')}.duckdb"
    if reuse and not cache.exists():
        raise SystemExit(f"error: --reuse: no cache at {cache}; run the write step first")
    if "write" in only:
        for p in (cache, Path(str(cache) + ".wal")):
            if p.exists():
                p.unlink()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    dp = _dp()
    result = done.get(label) or {"scale": label, "problems": PROBLEMS, "n": n, "steps": {}}
    steps: dict[str, dict] = result["steps"]

    def save() -> None:  # after each step, so a run cut short keeps what it measured
        if json_out:
            done[label] = result
            slim = [{**r, "steps": {k: {x: y for x, y in v.items() if x != "stdout" or k == "sweep"}
                                    for k, v in r["steps"].items()}} for r in done.values()]
            Path(json_out).write_text(json.dumps({"SYNTHETIC": True, "seed": seed, "results": slim},
                                                 indent=1, default=_plain))
    print(f"[{label}] SYNTHETIC cache: {PROBLEMS} problems x {n} traces -> {cache}", flush=True)
    if "write" in only:
        write_step(label, cache, n, seed, env, steps, result)
        save()
    elif "tokens" not in result:
        result.update(cache_totals(str(cache)))
    base = ["--cache", str(cache)]
    if "info" in only:
        steps["info"] = run_step([dp, "cache", "info", *base, "--json"], env)
        _say(label, "info", steps["info"])
        result["jaccard_s_per_pair"] = jaccard_speed(str(cache), seed)
    if "sweep" in only:
        sim = [dp, "simulate", *base, "--run", RUN, "--judge", "jaccard", "--truncate", "words:25",
               "--sweep", TAUS, "--orders", "50", "--seed", str(seed), "--json"]
        for p in POLICIES:
            sim += ["--policy", p]
        steps["sweep"] = run_step([*sim, "--no-store"], env)
        _say(label, "sweep", steps["sweep"])
        save()
    for rule in ("words:25", "tokens:512"):
        key = rule.replace(":", "")
        if "pairs" in only:
            s = run_step([dp, "judge", "pairs", *base, "--run", RUN, "--truncate", rule, "--json"], env)
            steps[f"pairs_{key}"] = s
            _say(label, f"pairs {rule}", s)
        if "eval" in only:
            s = run_step([dp, "judge", "eval", *base, "--run", RUN, "--judge", "jaccard", "--truncate", rule,
                          "--max-pairs", str(max_pairs), "--seed", str(seed), "--json"], env)
            steps[f"eval_{key}"] = s
            _say(label, f"eval jaccard {rule}", s)
        save()
    if "write" in only:
        result["token_columns"] = token_column_bytes(str(cache))
    if "figures" in only:
        fig_out = out / f"figures-{label.replace('/', 'of')}"
        shutil.rmtree(fig_out, ignore_errors=True)
        forget_results(str(cache))
        steps["figures"] = run_step([dp, "figures", *base, "--run", RUN, "--judge", "jaccard", "--out",
                                     str(fig_out), "--seed", str(seed)], env)
        _say(label, "figures", steps["figures"])
        save()
    return result


def write_step(label: str, cache: Path, n: int, seed: int, env: dict, steps: dict, result: dict) -> None:
    w = run_step([sys.executable, __file__, "_write", "--cache", str(cache), "--n", str(n), "--seed", str(seed)], env)
    wstats = json.loads(w["stdout"].strip().splitlines()[-1])
    steps["write"] = {"seconds": wstats["write_s"], "peak_rss_gib": w["peak_rss_gib"], **wstats}
    tokens = wstats["tokens"]
    steps["write"]["bytes_per_token_file"] = os.path.getsize(cache) / tokens
    _say(label, "write", steps["write"], f"{wstats['write_tokens_per_s']:,.0f} tok/s, {tokens:,} tokens")
    result.update(tokens=tokens, traces=wstats["traces"], file_bytes=os.path.getsize(cache))


def forget_results(cache: str) -> None:
    """Drop stored simulator points and judge scores, so a figures run starts from the cache as written."""
    from dp.cache.store import Cache

    with Cache(cache, write=True) as c:
        c.con.execute("DELETE FROM sim_points")
        c.con.execute("DELETE FROM judge_scores")


def cache_totals(cache: str) -> dict:
    """tokens, traces and file size of an existing SYNTHETIC cache (for --reuse without earlier JSON)."""
    from dp.cache.store import Cache

    with Cache(cache) as c:
        tokens, traces = c.con.execute("SELECT sum(n_tokens), count(*) FROM traces WHERE run = ?",
                                       [RUN]).fetchall()[0]
    return {"tokens": int(tokens), "traces": int(traces), "file_bytes": os.path.getsize(cache)}


def jaccard_speed(cache: str, seed: int, pairs_per_problem: int = 1000) -> float:
    """Seconds per pair of the jaccard judge on words:25 prefixes of this cache (in-process, no cache I/O)."""
    from dp.cache.store import Cache
    from dp.judge.base import load_judge
    from dp.judge.pairs import build_pairs

    with Cache(cache) as c:
        ps = build_pairs(c, RUN, "words:25", max_pairs_per_problem=pairs_per_problem, seed=seed)
    judge = load_judge("jaccard")
    t0 = time.perf_counter()
    judge.score(ps.left, ps.right)
    return (time.perf_counter() - t0) / max(ps.n, 1)


def judge_cost(r: dict) -> dict:
    """DeepPrune (tau 0.5) judge evaluations and jaccard seconds per problem next to the tokens it saves."""
    rows = json.loads(r["steps"]["sweep"]["stdout"])
    dp = next(x for x in rows if x["policy"] == "deepprune" and abs(x["params"].get("tau", 0) - 0.5) < 1e-9)
    problems = dp["problems"]
    saved = (dp["full_tokens"] - dp["tokens"]) / problems
    pairs = dp["judge_pairs"] / problems
    judge_s = pairs * r["jaccard_s_per_pair"]
    return {"judge": "jaccard", "truncate": "words:25", "tau": 0.5, "judge_pairs_per_problem": pairs,
            "seconds_per_pair": r["jaccard_s_per_pair"], "judge_seconds_per_problem": judge_s,
            "tokens_saved_per_problem": saved, "token_reduction": dp["token_reduction"],
            "break_even_tokens_per_s": saved / judge_s if judge_s else None}


def _plain(x):
    return float(x) if hasattr(x, "__float__") else str(x)


def token_column_bytes(cache: str) -> dict:
    """Bytes per token of each default column of `tokens`, each copied alone into a fresh file."""
    import tempfile

    import duckdb

    out = {}
    for col in ("trace_id", "pos", "token_id", "logprob", "confidence", "end_offset", "*"):
        with tempfile.TemporaryDirectory() as d:
            con = duckdb.connect(os.path.join(d, "x.duckdb"))
            con.execute(f"ATTACH '{cache}' AS src (READ_ONLY)")
            con.execute(f"CREATE TABLE t AS SELECT {col} FROM src.tokens ORDER BY trace_id, pos")
            n = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
            con.execute("DETACH src")
            con.execute("CHECKPOINT")
            used = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchall()[0][0]
            con.close()
        out["all" if col == "*" else col] = used / max(n, 1)
    return out


def _say(label: str, name: str, s: dict, extra: str = "") -> None:
    print(f"[{label}] {name:22s} {s['seconds']:8.1f} s  peak RSS {s['peak_rss_gib']:.2f} GiB  {extra}", flush=True)


STEP_ORDER = ("write", "info", "pairs_words25", "pairs_tokens512", "eval_words25", "eval_tokens512", "sweep",
              "figures")


def table(results: list[dict]) -> str:
    """Markdown: each step at each size (seconds, peak RSS) and the growth exponent in tokens."""
    head = "| step | " + " | ".join(f"{r['scale']} (N={r['n']}, {r['tokens'] / 1e6:.1f} M tok)" for r in results)
    head += " | growth exponent |\n|---|" + "---|" * (len(results) + 1) + "\n"
    lines = []
    for key in STEP_ORDER:
        cells = [f"{r['steps'][key]['seconds']:.1f} s, {r['steps'][key]['peak_rss_gib']:.2f} GiB"
                 if key in r["steps"] else "not run" for r in results]
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {growth(results, key)} |")
    return head + "\n".join(lines)


def growth(results: list[dict], key: str) -> str:
    """Least-squares slope of log(seconds) against log(tokens); '-' with fewer than 2 sizes."""
    pts = [(math.log(r["tokens"]), math.log(max(r["steps"][key]["seconds"], 1e-3)))
           for r in results if key in r["steps"]]
    mx = sum(x for x, _ in pts) / max(len(pts), 1)
    my = sum(y for _, y in pts) / max(len(pts), 1)
    var = sum((x - mx) ** 2 for x, _ in pts)
    return f"{sum((x - mx) * (y - my) for x, y in pts) / var:.2f}" if var > 0 else "-"


def check_targets(r: dict) -> list[str]:
    """One line per target (steps not measured are left out)."""
    s = r["steps"]
    out = []

    def check(step: str, name: str, ok, val) -> None:
        if step in s:
            out.append(f"  {'ok  ' if ok() else 'MISS'} {name}: {val()}")

    check("write", "writing >= 200 K tok/s", lambda: s["write"]["write_tokens_per_s"] >= TARGETS["write_tokens_per_s"],
          lambda: f"{s['write']['write_tokens_per_s']:,.0f} tok/s")
    check("write", "tokens table <= 10 bytes/token",
          lambda: r.get("token_columns", {}).get("all", 99) <= TARGETS["bytes_per_token"],
          lambda: f"{r.get('token_columns', {}).get('all', float('nan')):.2f} bytes/token "
                  f"(whole file {r['file_bytes'] / r['tokens']:.2f})")
    check("info", "dp cache info < 10 s", lambda: s["info"]["seconds"] < TARGETS["info_s"],
          lambda: f"{s['info']['seconds']:.1f} s")
    check("sweep", "sweep < 60 s", lambda: s["sweep"]["seconds"] < TARGETS["sweep_warm_s"],
          lambda: f"{s['sweep']['seconds']:.1f} s")
    if s:
        peak = max(v["peak_rss_gib"] for v in s.values())
        out.append(f"  {'ok  ' if peak < TARGETS['peak_rss_gib'] else 'MISS'} peak RSS < 4 GiB every step "
                   f"measured: max {peak:.2f} GiB")
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        return step_main(sys.argv[3:])
    if len(sys.argv) > 1 and sys.argv[1] == "_write":
        ap = argparse.ArgumentParser()
        ap.add_argument("_write")
        ap.add_argument("--cache", required=True)
        ap.add_argument("--n", type=int, required=True)
        ap.add_argument("--seed", type=int, default=0)
        a = ap.parse_args()
        print(json.dumps(write_cache(a.cache, PROBLEMS, a.n, a.seed)))
        return None
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=[*SCALES, "all"], default="1/16")
    ap.add_argument("--out", default="out/scale", help="Directory for the caches and figures (not in git).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pairs", type=int, default=20_000, help="Pairs per problem for `dp judge eval`.")
    ap.add_argument("--json", dest="json_out", default=None, help="Also write every number to this file.")
    ap.add_argument("--steps", default=",".join(STEPS),
                    help=f"Comma-separated steps to run (default all: {','.join(STEPS)}); others keep their "
                         "numbers from the --json file.")
    ap.add_argument("--reuse", action="store_true", help="Run the steps on the cache left by an earlier run.")
    ap.add_argument("--table", nargs="+", default=None, metavar="JSON",
                    help="Only print the table and checks of earlier --json files (sizes run separately).")
    args = ap.parse_args()
    if args.table:
        report([r for f in args.table for r in json.loads(Path(f).read_text())["results"]])
        return None
    labels = [k for k in SCALES if k != "1/64"] if args.scale == "all" else [args.scale]
    print(f"SYNTHETIC data (benchmarks/scale_data.py, seed {args.seed}); machine: {platform.machine()}, "
          f"{os.cpu_count()} cores, {_mem_gib():.0f} GiB; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    only = tuple(x.strip() for x in args.steps.split(",") if x.strip())
    bad = [x for x in only if x not in STEPS]
    if bad or not only:
        raise SystemExit(f"error: unknown steps {bad}; known: {', '.join(STEPS)}")
    if "write" not in only and not args.reuse:
        raise SystemExit("error: without the write step, pass --reuse to run on the cache an earlier run left")
    done: dict = {}
    if args.json_out and Path(args.json_out).exists() and only != STEPS:
        done = {r["scale"]: r for r in json.loads(Path(args.json_out).read_text())["results"]}
    results = [bench_size(lab, Path(args.out), args.seed, args.max_pairs, args.json_out, done, only, args.reuse)
               for lab in labels]
    report(results)
    return None


def report(results: list[dict]) -> None:
    print("\n" + table(results))
    for r in results:
        print(f"\n[{r['scale']}] targets:")
        print("\n".join(check_targets(r)))
        if "sweep" not in r["steps"] or "jaccard_s_per_pair" not in r:
            continue
        jc = judge_cost(r)
        print("  token columns, bytes/token: " + ", ".join(f"{k} {v:.2f}" for k, v in r.get("token_columns", {}).items()))
        print(f"  judge cost (DeepPrune tau 0.5, jaccard words:25): {jc['judge_pairs_per_problem']:,.0f} pair "
              f"evaluations and {jc['judge_seconds_per_problem']:.2f} s per problem "
              f"({1e6 * jc['seconds_per_pair']:.0f} us/pair) save {jc['tokens_saved_per_problem']:,.0f} "
              f"generation tokens per problem ({100 * jc['token_reduction']:.1f}%): the judge pays for itself "
              f"while generation is slower than {jc['break_even_tokens_per_s'] or float('nan'):,.0f} tok/s")


def _mem_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


if __name__ == "__main__":
    main()
