"""A `dp tune` settings file live (slow): each decision equals the simulator's replay in the live
order. Run on the trace-driven engine (`--engine replay`, which streams the generated run's own
traces): what is tested is the settings file's way into `dp live`; that every policy decides on the
real engine as the replay does is `tests/test_live.py`, and that the trace-driven engine reproduces
the real one is `tests/test_replay_engine.py`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.proc_helpers import DP


@pytest.mark.slow
def test_tuned_settings_live_equal_their_replay(tmp_path, arith_reference):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cache = tmp_path / "c.duckdb"
    shutil.copy(arith_reference, cache)
    # dp tune on the generated run, then dp live --settings with the file it wrote
    f = tmp_path / "tuned.json"
    tune = [*DP, "tune", "--cache", str(cache), "--run", "arith", "--judge", "jaccard", "--truncate", "tokens:8",
            "--folds", "3", "--orders", "3", "--tolerance", "0.34", "--out", str(f), "--json"]
    r = subprocess.run(tune, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(f.read_text())
    live = [*DP, "live", "--cache", str(cache), "--run", "arith", "--settings", str(f), "--live-run", "tuned",
            "--engine", "replay", "--compare", "--json"]
    r = subprocess.run(live, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["policy"] == doc["policy"] and out["truncate"] == doc["truncate"]
    assert out["decisions_matched"] == out["decisions_total"] == 24, out.get("simulated_per_problem")
