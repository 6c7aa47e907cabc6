"""`dp frontier` wall time and peak memory: the ESC file (500 x 40) or the synthetic paper-scale cache.

- `--data esc` (default): imports ../shared/data/traces/esc_gpt35_last_letters_T0.7.jsonl into a
  fresh cache (not timed), then runs `dp frontier --run esc` with the default families, the
  features judge cross-fitted over 5 folds, `--truncate tokens:8`, 20 orders: once cold (the
  judge-score cache empty: trains the fold judges, scores every pair) and once warm (scores cached).
- `--data scale`: writes the SYNTHETIC 30 x N cache of `bench_scale.py` (`--n`, default 512) and
  runs `dp frontier --run synthetic-scale` with the jaccard judge at words:25, cold then warm.

Each `dp frontier` runs as its own process; its wall time and peak RSS (`os.wait4`) are printed
and written to `--json`. Run by hand, under the shared lock on a shared machine:

    flock /tmp/dp-heavy.lock .venv/bin/python benchmarks/bench_frontier.py --json results/bench_frontier.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ESC = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces" / "esc_gpt35_last_letters_T0.7.jsonl"


def _dp() -> str:
    exe = Path(sys.executable).parent / "dp"
    return str(exe) if exe.exists() else "dp"


def timed(cmd: list[str]) -> dict:
    """Run cmd; its wall seconds and peak RSS (GiB) from wait4."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed")
    return {"seconds": secs, "peak_rss_gib": usage.ru_maxrss / 2**20, "stdout": out.decode()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["esc", "scale"], default="esc")
    ap.add_argument("--n", type=int, default=512, help="traces per problem of the synthetic cache")
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--cache", default=None, help="cache file (default: a temporary one)")
    ap.add_argument("--json", dest="json_out", default=None)
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    cache = a.cache or str(Path(tmp.name) / "frontier.duckdb")
    if a.data == "esc":
        subprocess.run([_dp(), "import", str(ESC), "--format", "esc", "--run", "esc", "--cache", cache],
                       check=True, capture_output=True)
        args = ["--run", "esc", "--crossfit", "5", "--truncate", "tokens:8"]
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_scale import RUN, write_cache

        write_cache(cache, 30, a.n, seed=0)
        args = ["--run", RUN, "--judge", "jaccard", "--truncate", "words:25"]
    result = {"data": a.data, "n": a.n if a.data == "scale" else 40, "orders": a.orders, "args": args,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()}}
    for run in ("cold", "warm"):
        out = Path(tmp.name) / run
        r = timed([_dp(), "frontier", "--cache", cache, *args, "--orders", str(a.orders), "--json", "--out", str(out)])
        body = json.loads(r.pop("stdout"))["runs"][0]
        r.update(points=len(body["points"]), family_seconds=body["family_seconds"])
        result[run] = r
        print(f"{a.data} {run}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_gib']:.2f} GiB, {r['points']} points",
              flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
