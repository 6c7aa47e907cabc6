"""`dp simulate --order live`: the arrival order recorded by `dp live` / `dp serve` is read back
from `live_traces` and replayed as the one order (fast; the end-to-end check is tests/test_serve.py)."""

from __future__ import annotations

import shutil

import numpy as np

from dp.cache.live import read_live_orders, write_live_rows
from dp.cache.store import Cache
from dp.judge.truncation import TruncationRule
from dp.simulate.replay.context import build_contexts
from dp.simulate.replay.driver import make_orders
from tests.conftest import invoke


def test_recorded_arrival_ranks_become_the_replayed_order(real_cache, tmp_path):
    path = tmp_path / "c.duckdb"
    shutil.copy(real_cache, path)
    with Cache(path, write=True) as c:
        pid = c.load_run("qwen")[0].problem.problem_id
        ranks = [2, 0, 3, 1, 7, 6, 5, 4]  # trace t arrived ranks[t]-th
        with c.transaction():
            write_live_rows(c, "qwen", pid, ranks, ["prune"] * 8, [5] * 8, [9] * 8)
            write_live_rows(c, "qwen", "other", [0, -1], ["prune"] * 2, [1, 1], [1, 1])  # one never arrived
        assert read_live_orders(c, "qwen")[pid].tolist() == [1, 3, 0, 2, 7, 6, 5, 4]
        assert "other" not in read_live_orders(c, "qwen")
        ctx, second = build_contexts(c, "qwen", TruncationRule.parse("tokens:50"), limit=2)
    assert ctx.live_order.tolist() == [1, 3, 0, 2, 7, 6, 5, 4] and second.live_order is None
    assert np.array_equal(make_orders(ctx, 50, "live", 0), [[1, 3, 0, 2, 7, 6, 5, 4]])
    r = invoke("simulate", "--cache", path, "--run", "qwen", "--policy", "cons", "--policy", "deepprune",
               "--judge", "jaccard", "--truncate", "tokens:50", "--order", "live", "--limit", "1", "--no-store",
               "--json")
    assert r.exit_code == 0, r.output
    assert '"order_kind": "live"' in r.output and '"orders": 1' in r.output


def test_order_live_on_a_run_without_live_rows_is_a_one_line_error(real_cache):
    r = invoke("simulate", "--cache", real_cache, "--run", "qwen", "--policy", "deepprune", "--judge", "jaccard",
               "--truncate", "tokens:50", "--order", "live", "--limit", "1", "--no-store")
    assert r.exit_code == 2
    assert "no recorded live arrival order" in r.output and "Traceback" not in r.output
