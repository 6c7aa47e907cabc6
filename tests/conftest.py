"""Shared fixtures: the shared data directory and a cache with both real trace files imported."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dp.cli import cli
from dp.problems import shared_data_dir


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
