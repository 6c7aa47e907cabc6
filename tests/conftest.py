"""Shared fixtures: the shared data directory, a cache with both real trace files imported, and
one uninterrupted `dp generate` on the real engine that the slow tests share."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from dp.cli import cli
from dp.problems import shared_data_dir
from tests.proc_helpers import DP


@pytest.fixture(scope="session")
def data_dir():
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present")
    return d


def invoke(*args: str):
    """Run `dp ARGS` in-process; returns click's Result (exit_code, output, exception)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory, data_dir):
    """A cache with run 'esc' (GPT-3.5, 500 x 40) and run 'qwen' (Qwen2.5-Math, 100 x 8)."""
    path = tmp_path_factory.mktemp("real") / "real.duckdb"
    for fmt, name, run in (("esc", "esc_gpt35_last_letters_T0.7.jsonl", "esc"),
                           ("qwen-math", "qwen25math_math_cot_100.jsonl", "qwen")):
        r = invoke("import", data_dir / "traces" / name, "--format", fmt, "--run", run, "--cache", path)
        assert r.exit_code == 0, r.output
    return path


# GSM8K answers run to the token limit: 3 problems x 4 traces x 64 tokens, seed 5
GSM = ["--dataset", "gsm8k", "--limit", "3", "--n", "4", "--max-tokens", "64", "--seed", "5", "--enforce-eager",
       "--run", "r"]


@pytest.fixture(scope="session")
def gsm_reference(tmp_path_factory):
    """(cache path, `--json` output) of one uninterrupted `dp generate` of GSM (one engine start for
    every slow test that needs a generated run: read back, resumed runs compared with it, live runs).
    Tests that write copy the file first."""
    path = tmp_path_factory.mktemp("gsm") / "gsm.duckdb"
    r = subprocess.run([*DP, "generate", "--cache", str(path), *GSM, "--json", "--no-progress"], capture_output=True,
                       text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    return path, json.loads(r.stdout)


def run_tokens(path, run: str) -> dict:
    """{(problem_id, index): token ids} of a stored run."""
    from dp.cache.store import Cache

    with Cache(path, wait=30) as c:
        out = {}
        for p in c.load_run(run):
            for idx, ids in zip(p.index, c.token_arrays(p.trace_ids, "token_id")):
                out[(p.problem.problem_id, int(idx))] = ids.tolist()
        return out


@pytest.fixture(scope="session")
def arith_reference(tmp_path_factory):
    """One `dp generate` of 3 arith problems x 8 traces x 48 tokens, seed 3, shared by the slow live
    tests (each copies the file before writing)."""
    path = tmp_path_factory.mktemp("arith") / "arith.duckdb"
    gen = [*DP, "generate", "--cache", str(path), "--run", "arith", "--limit", "3", "--n", "8", "--max-tokens", "48",
           "--seed", "3", "--enforce-eager", "--no-progress"]
    r = subprocess.run(gen, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    return path

