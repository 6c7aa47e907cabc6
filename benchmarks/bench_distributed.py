"""Ray's overhead: `dp generate` single-process vs `--replicas 1` vs `--replicas 2`.

Run by hand (it starts up to two vLLM engines one after the other; take the lock):

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_distributed.py [--out results/bench_distributed.txt]

The same workload (arith problems x N traces, fp32, enforce_eager, seed 7) three ways,
each through the real command line into a fresh cache: wall time of the whole command
(engine start included), the generation phase (`seconds` in --json: from the first
unit sent to the last one written) and its tokens/s, and whether the stored traces
equal the single-process ones. On a machine with fewer cores than replicas the point
is correctness and overhead, not speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generate import machine  # noqa: E402


def stored(path: Path) -> dict:
    from dp.cache.store import Cache

    with Cache(path) as c:
        out = {}
        for p in c.load_run("default"):
            ids = c.token_arrays(p.trace_ids, "token_id")
            lps = c.token_arrays(p.trace_ids, "logprob")
            for idx, t, i, lp in zip(p.index, c.texts(p.trace_ids), ids, lps):
                out[(p.problem.problem_id, int(idx))] = (t, i.tolist(), lp.tolist())
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=4)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--kv-gib", default="1")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    base = ["--limit", str(a.problems), "--n", str(a.n), "--max-tokens", str(a.max_tokens), "--seed", "7",
            "--enforce-eager", "--batch", str(a.n), "--json", "--no-progress"]
    head = [f"# bench_distributed: {machine()}",
            f"# workload: {a.problems} arith problems x {a.n} traces, max {a.max_tokens} tokens, seed 7, "
            f"SmolLM2-135M fp32 enforce_eager, VLLM_CPU_KVCACHE_SPACE={a.kv_gib} GiB per engine, batch {a.n}",
            "| mode | wall s (command) | generation s | tokens | tok/s (generation) | same traces as single |",
            "|---|---|---|---|---|---|"]
    rows, ref = [], None
    with tempfile.TemporaryDirectory(prefix="dpbench", dir="/tmp") as tmp:
        for mode, extra in (("single process", []), ("ray, 1 replica", ["--replicas", "1"]),
                            ("ray, 2 replicas", ["--replicas", "2"])):
            path = Path(tmp) / f"{len(rows)}.duckdb"
            env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": a.kv_gib, "RAY_TMPDIR": tmp,
                   "OMP_WAIT_POLICY": "PASSIVE"}
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "dp.cli", "generate", "--cache", str(path), *base, *extra],
                               capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"{mode} failed: {r.stderr[-1500:]}")
            out = json.loads(r.stdout)
            traces = stored(path)
            ref = ref or traces
            rows.append(f"| {mode} | {wall:.1f} | {out['seconds']:.1f} | {out['tokens']} | "
                        f"{out['tokens_per_s']:.1f} | {'yes' if traces == ref else 'NO'} |")
            print(rows[-1], flush=True)
    text = "\n".join(head + rows) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
