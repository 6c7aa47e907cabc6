"""short-m@k, confidence-weighted DeepPrune and a `dp tune` settings file live (slow): each decision
equals the simulator's replay in the live order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.proc_helpers import DP


@pytest.mark.slow
def test_new_policies_and_tuned_settings_live_equal_their_replay(tmp_path, arith_reference):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cache = tmp_path / "c.duckdb"
    shutil.copy(arith_reference, cache)
    live = [*DP, "live", "--cache", str(cache), "--run", "arith", "--policy", "short-m@k", "--m", "3",
            "--policy", "deepprune-conf", "--tau", "0.5", "--K2", "3", "--truncate", "tokens:8", "--judge", "jaccard",
            "--conf-window", "8", "--max-problems-in-flight", "1", "--compare", "--json"]
    r = subprocess.run(live, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = {o["policy"]: o for o in json.loads(r.stdout)["runs"]}
    for name, o in runs.items():
        assert o["decisions_total"] == 24 and o["decisions_matched"] == 24, (name, o["simulated_per_problem"])
    assert runs["short-m@k"]["live_tokens"] < runs["short-m@k"]["reference_tokens"]
    # dp tune on the generated run, then dp live --settings with the file it wrote
    f = tmp_path / "tuned.json"
    tune = [*DP, "tune", "--cache", str(cache), "--run", "arith", "--judge", "jaccard", "--truncate", "tokens:8",
            "--folds", "3", "--orders", "3", "--tolerance", "0.34", "--out", str(f), "--json"]
    r = subprocess.run(tune, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(f.read_text())
    live = [*DP, "live", "--cache", str(cache), "--run", "arith", "--settings", str(f), "--live-run", "tuned",
            "--max-problems-in-flight", "1", "--compare", "--json"]
    r = subprocess.run(live, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["policy"] == doc["policy"] and out["truncate"] == doc["truncate"]
    assert out["decisions_matched"] == out["decisions_total"] == 24, out.get("simulated_per_problem")
