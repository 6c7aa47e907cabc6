"""`dp generate` end to end on the real vLLM engine and the embedded model (slow).

A kill -9 in the middle of a generation leaves no engine process alive, and the
same command then ends with exactly the traces of an uninterrupted run of the same seed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dp.cache.store import Cache
from dp.generate.watchdog import descendants
from tests.conftest import invoke
from tests.proc_helpers import is_engine, kill_leftovers, wait_gone

DP = [sys.executable, "-m", "dp.cli"]
ARGS = ["--limit", "4", "--n", "6", "--max-tokens", "40", "--seed", "7", "--enforce-eager", "--batch", "6"]


def _tokens(path: Path, run: str = "default") -> dict:
    with Cache(path) as c:
        out = {}
        for p in c.load_run(run):
            for _tid, idx, ids in zip(p.trace_ids, p.index, c.token_arrays(p.trace_ids, "token_id")):
                out[(p.problem.problem_id, int(idx))] = ids.tolist()
        return out


def test_bad_input_fails_before_anything_is_written(tmp_path):
    cache = tmp_path / "c.duckdb"
    for args, msg in ((["--n", "0"], "n must be >= 1"), (["--max-tokens", "0"], "max_tokens"),
                      (["--temperature", "-1"], "temperature"), (["--dataset", "nope"], "unknown dataset"),
                      (["--model", "/no/such/model"], "model"), (["--shard", "3/2"], "shard")):
        r = invoke("generate", "--cache", cache, *args)
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert not cache.exists()


@pytest.mark.slow
def test_generate_reads_back_and_resumes_after_kill(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full.duckdb"
    r = subprocess.run([*DP, "generate", "--cache", str(full), *ARGS, "--json", "--no-progress"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["run_traces"] == 24 and out["traces"] == 24
    # read back: ids decode to the text, confidences finite
    from dp.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    with Cache(full) as c:
        probs = c.load_run("default")
        ids = c.token_arrays(probs[0].trace_ids, "token_id")
        conf = c.token_arrays(probs[0].trace_ids, "confidence")
        texts = c.texts(probs[0].trace_ids)
        for i, t, cf in zip(ids, texts, conf):
            assert tok.decode(i.tolist(), skip_special_tokens=True) == t
            assert np.isfinite(cf).all() and (cf > 0).all()
        assert c.run_info("default")["engine"].startswith("vllm")

    # the same command killed after its first batch, then run again
    part = tmp_path / "part.duckdb"
    cmd = [*DP, "generate", "--cache", str(part), *ARGS]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen, buf, t0 = False, "", time.time()
    while time.time() - t0 < 600:
        ch = proc.stderr.read(1)
        if not ch:
            break
        buf += ch
        if re.search(r"\b(6|12|18)/24\b", buf):
            seen = True
            break
    assert seen, buf[-2000:]
    engines = {pid: st for pid, st in descendants(proc.pid).items() if is_engine(pid)}
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = wait_gone(engines, timeout=15)
    kill_leftovers(engines)
    assert engines and left == [], "an engine outlived the killed dp generate"
    with Cache(part) as c:
        assert 0 < len(c.done_keys("default")) < 24
    r = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _tokens(part) == _tokens(full)
    # a third run finds nothing to do and duplicates nothing
    r = subprocess.run(cmd + ["--no-progress", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["traces"] == 0
