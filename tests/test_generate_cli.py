"""`dp generate` on the command line: bad input fails before anything is written; the
shared generated run (conftest's `gsm_reference`, the real vLLM engine) reads back, and the
same command again finds nothing to do. Kills and resumes: tests/test_faults.py.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from dp.cache.store import Cache
from tests.conftest import GSM, invoke
from tests.proc_helpers import DP


def test_bad_input_fails_before_anything_is_written(tmp_path):
    cache = tmp_path / "c.duckdb"
    for args, msg in ((["--n", "0"], "n must be >= 1"), (["--max-tokens", "0"], "max_tokens"),
                      (["--temperature", "-1"], "temperature"), (["--dataset", "nope"], "unknown dataset"),
                      (["--model", "/no/such/model"], "model"), (["--shard", "3/2"], "shard")):
        r = invoke("generate", "--cache", cache, *args)
        assert r.exit_code != 0 and msg in r.output, (args, r.output)
        assert not cache.exists()


@pytest.mark.slow
def test_generate_reads_back_and_a_repeat_finds_nothing_to_do(gsm_reference):
    """The shared uninterrupted run (kill -9 and resume: tests/test_faults.py, compared with it)."""
    path, out = gsm_reference
    assert out["run_traces"] == 12 and out["traces"] == 12
    # read back: ids decode to the text, confidences finite
    from dp.models import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    with Cache(path) as c:
        probs = c.load_run("r")
        assert sorted(p.n for p in probs) == [4, 4, 4]
        ids = c.token_arrays(probs[0].trace_ids, "token_id")
        conf = c.token_arrays(probs[0].trace_ids, "confidence")
        texts = c.texts(probs[0].trace_ids)
        for i, t, cf in zip(ids, texts, conf):
            assert tok.decode(i.tolist(), skip_special_tokens=True) == t
            assert np.isfinite(cf).all() and (cf > 0).all()
        assert c.run_info("r")["engine"].startswith("vllm")
    # the same command again finds nothing to do: no engine start, nothing written
    before = (path.stat().st_size, path.stat().st_mtime_ns)
    r = subprocess.run([*DP, "generate", "--cache", str(path), *GSM, "--no-progress", "--json"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["traces"] == 0, r.stderr[-2000:]
    assert (path.stat().st_size, path.stat().st_mtime_ns) == before
