"""Load test of `dp serve`: 32 requests from 8 concurrent clients, pruned and not.

Run by hand under the heavy lock (it starts a vLLM engine and uses every core):

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_serve.py [--requests 32 --clients 8 --n 16]

Starts `dp serve` on 127.0.0.1 (a free port), sends the embedded arithmetic questions
(`dp.problems.embedded_problems`, seeded) as chat completions with a fixed seed each,
first under the server's policy (DeepPrune), then the very same requests with
`"dp": {"policy": "cons"}` (pruning off; same seeds, so the same traces in keep mode).
Bounded: a fixed number of requests, each answered or counted as lost, then SIGTERM.
Checks every answer is a well-formed chat.completion, none is lost and the server is
healthy after; reports requests/s, p50/p95 latency, tokens and the vote's accuracy
against the gold answers. Writes results/bench_serve.json.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_generate import machine  # noqa: E402
from tests.proc_helpers import Proc, kill_leftovers, wait_gone  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def well_formed(out: dict, n: int) -> bool:
    dp = out.get("dp", {})
    return (out.get("object") == "chat.completion" and len(out.get("choices", [])) == 1
            and isinstance(out["choices"][0]["message"]["content"], str)
            and dp.get("traces_started") == n == dp.get("traces_pruned", -1) + dp.get("traces_finished", -1)
            and out["usage"]["completion_tokens"] == dp.get("tokens_generated"))


def phase(base: str, problems, args, extra: dict | None) -> dict:
    """All requests through `clients` workers; latency per request, tokens, answers."""
    from dp.answers import is_correct

    def one(i: int) -> dict:
        p = problems[i]
        body = {"model": args.model, "messages": [{"role": "user", "content": p.question}], "seed": 1000 + i,
                "n": args.n, **({"dp": extra} if extra else {})}
        t0 = time.perf_counter()
        try:
            r = httpx.post(base + "/v1/chat/completions", json=body, timeout=900)
        except httpx.HTTPError as e:
            return {"i": i, "status": None, "error": str(e), "seconds": time.perf_counter() - t0}
        out = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        row = {"i": i, "status": r.status_code, "seconds": time.perf_counter() - t0}
        if r.status_code != 200:
            row["error"] = out.get("error", {}).get("message", r.text[:300])
        if r.status_code == 200:
            dp = out["dp"]
            row.update(ok=well_formed(out, args.n), tokens=out["usage"]["completion_tokens"], answer=dp["answer"],
                       correct=bool(is_correct(dp["answer"], p.gold, p.kind)), pruned=dp["traces_pruned"],
                       judge_seconds=dp["judge_seconds"], judge_pairs=dp["judge_pairs"])
        return row

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        rows = list(pool.map(one, range(len(problems))))
    wall = time.perf_counter() - t0
    lat = np.array([r["seconds"] for r in rows])
    good = [r for r in rows if r["status"] == 200 and r.get("ok")]
    return {
        "requests": len(rows), "answered_well_formed": len(good), "lost": len(rows) - len(good),
        "statuses": sorted({str(r["status"]) for r in rows}), "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(good) / wall, 3),
        "latency_p50": round(float(np.percentile(lat, 50)), 2), "latency_p95": round(float(np.percentile(lat, 95)), 2),
        "tokens": int(sum(r.get("tokens", 0) for r in good)),
        "traces_pruned": int(sum(r.get("pruned", 0) for r in good)),
        "accuracy": round(float(np.mean([r.get("correct", False) for r in good])), 4) if good else None,
        "judge_seconds": round(float(sum(r.get("judge_seconds", 0) for r in good)), 3),
        "judge_pairs": int(sum(r.get("judge_pairs", 0) for r in good)),
        "errors": sorted({r["error"] for r in rows if r.get("error")}),
        "per_request_tokens": {r["i"]: r["tokens"] for r in good},
    }


def _saved(pruned: dict, full: dict) -> float | None:
    """1 - tokens(pruned) / tokens(cons) over the requests answered in both phases."""
    both = set(pruned.get("per_request_tokens", {})) & set(full.get("per_request_tokens", {}))
    cons = sum(full["per_request_tokens"][i] for i in both)
    return round(1 - sum(pruned["per_request_tokens"][i] for i in both) / cons, 4) if cons else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--truncate", default="tokens:8")
    ap.add_argument("--tau", default="0.5")
    ap.add_argument("--K2", default="4")
    ap.add_argument("--judge", default="features")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/bench_serve.json")
    ap.add_argument("--pruned-only", action="store_true", help="Skip the pruning-off phase (a quick check).")
    args = ap.parse_args()
    from dp.problems import embedded_problems

    problems = embedded_problems(args.requests, seed=args.seed)
    port = free_port()
    server = ["serve", "--model", args.model, "--n", args.n, "--max-tokens", args.max_tokens, "--truncate",
              args.truncate, "--tau", args.tau, "--K2", args.K2, "--judge", args.judge, "--port", port,
              "--max-concurrent", args.clients, "--seed", args.seed]
    at_start = machine()
    proc = Proc(*server, env={"OMP_WAIT_POLICY": "PASSIVE"})
    base = f"http://127.0.0.1:{port}"
    engines: dict = {}
    try:
        t0 = time.time()
        while True:
            if proc.p.poll() is not None or time.time() - t0 > 600:
                print(proc.text[-3000:], file=sys.stderr)
                return 1
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        engines = proc.engines()
        startup = time.time() - t0
        pruned = phase(base, problems, args, None)
        print(json.dumps({"deepprune": pruned}), flush=True)
        full = phase(base, problems, args, {"policy": "cons"}) if not args.pruned_only else {"tokens": 0, "lost": 0}
        alive = httpx.get(base + "/health", timeout=5).json().get("status") == "ok"
        proc.p.send_signal(signal.SIGTERM)
        rc = proc.finish(300)
        gone = wait_gone(engines) == []
    finally:
        if proc.p.poll() is None:
            proc.p.kill()
        kill_leftovers(engines)
    out = {
        "machine": at_start, "load_at_end": round(__import__("os").getloadavg()[0], 2),
        "command": "dp " + " ".join(map(str, server)),
        "settings": {"requests": args.requests, "clients": args.clients, "n": args.n, "max_tokens": args.max_tokens,
                     "request_seeds": f"1000 + i, i = 0..{args.requests - 1}", "questions": f"embedded arith, seed {args.seed}"},
        "startup_seconds": round(startup, 1), "deepprune": pruned, "cons": full,
        "tokens_saved": _saved(pruned, full),
        "server_alive_after": alive, "sigterm_exit_code": rc, "engines_gone": gone,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    ok = (pruned["lost"] == 0 and full["lost"] == 0 and alive and rc == 0 and gone)
    print("load test " + ("PASSED" if ok else "FAILED"))
    if not ok:
        print(proc.text[-3000:], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
