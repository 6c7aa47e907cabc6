"""`dp live --compare` on the embedded model (slow): every live policy's decisions match the
simulator's in the live order, on one engine with problems in flight. (A words rule, whose decision
point lands mid-trace, live on the real engine: `tests/test_replay_engine.py`.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from dp.cache.store import Cache
from tests.proc_helpers import DP


@pytest.mark.slow
def test_every_policy_live_equals_its_replay(tmp_path, arith_reference):
    """DeepPrune (keep and resume), DeepConf, ESC, Adaptive, Slim-SC, short-m@k and
    confidence-weighted DeepPrune on one engine, at most three problems in flight: each decision
    equals the replay's in the live order (fp32 keeps the cached traces whatever runs beside
    them in the batch)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cache = tmp_path / "c.duckdb"
    shutil.copy(arith_reference, cache)
    live = [*DP, "live", "--cache", str(cache), "--run", "arith", "--policy", "deepprune", "--tau", "0.5",
            "--K2", "3", "--truncate", "tokens:8", "--judge", "jaccard", "--mode", "keep", "--mode", "resume",
            "--policy", "deepconf-high", "--warmup", "4", "--conf-window", "8", "--policy", "esc", "--window", "3",
            "--policy", "adaptive", "--wave", "2", "--policy", "slimsc", "--every", "8", "--similarity", "0.9",
            "--policy", "short-m@k", "--m", "3", "--policy", "deepprune-conf",
            "--max-problems-in-flight", "3", "--compare", "--json"]
    r = subprocess.run(live, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = {(o["policy"], o["mode"]): o for o in json.loads(r.stdout)["runs"]}
    assert set(runs) == {("deepprune", "keep"), ("deepprune", "resume"), ("deepconf-high", "keep"),
                         ("esc", "keep"), ("adaptive", "keep"), ("slimsc", "keep"), ("short-m@k", "keep"),
                         ("deepprune-conf", "keep"), ("deepprune-conf", "resume")}
    out = runs["deepprune", "keep"]
    for key in ("live_tokens", "simulated_tokens", "decisions_matched", "decisions_total", "live_seconds",
                "full_generation_seconds", "token_cut", "wall_cut", "wall_to_token_cut"):
        assert key in out
    assert out["max_problems_in_flight"] == 3 and out["dtype"] == "float32"
    assert out["max_traces_in_flight"] == 64 and 8 <= out["peak_traces_in_flight"] <= 3 * 8  # the engine's batch
    per = list(out["simulated_per_problem"].values())
    assert all(p["prefixes_identical"] for p in per), per  # keep mode, fp32: the cached continuations
    for key, o in runs.items():
        assert o["decisions_total"] == 24 and o["decisions_matched"] == 24, (key, o["simulated_per_problem"])
    for name in ("esc", "adaptive"):  # nothing stopped mid-trace: exactly what the replay charges
        assert runs[name, "keep"]["live_tokens"] == runs[name, "keep"]["simulated_tokens"]
    assert runs["esc", "keep"]["live_tokens"] < runs["esc", "keep"]["reference_tokens"]
    assert runs["short-m@k", "keep"]["live_tokens"] < runs["short-m@k", "keep"]["reference_tokens"]
    assert runs["deepprune", "resume"]["live_tokens"] <= out["live_tokens"] < out["reference_tokens"]
    with Cache(cache) as c:
        finished = c.con.execute("SELECT count(*) FROM live_traces WHERE run = 'arith-live-deepprune-keep' "
                                 "AND decision = 'finish'").fetchone()[0]
        assert finished <= 3 * 3
        assert c.run_info("arith-live-deepprune-keep")["source"] == "live"
        skipped, with_tokens = c.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE tokens_generated > 0) FROM live_traces "
            "WHERE run = 'arith-live-esc-keep' AND decision = 'skip'").fetchone()
        assert skipped > 0 and with_tokens == 0  # unstarted traces are stored, with no tokens
