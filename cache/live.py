"""The `live_traces` table: what `dp live` decided per trace, written and read back; and the
`problem_settings` table: one JSON object per problem (a served request's provenance and summary),
so that adding a problem to a run never rewrites what is stored for the others.

Writing happens inside the caller's transaction (with the problem's traces), so a
problem of a live run is stored whole or not at all. Reading back returns one
problem's rows as arrays by trace index, which is what resuming an interrupted
live run needs. No pruning logic here.
"""

from __future__ import annotations

import json

import numpy as np

from dp.cache.store import Cache


def write_live_rows(cache: Cache, run: str, problem_id: str, arrival_rank: list[int], decision: list[str],
                    decision_token: list[int], tokens: list[int]) -> None:
    """One row per trace index of one problem (arrival rank -1: never arrived)."""
    cache.need_write()
    cache.con.executemany(
        "INSERT INTO live_traces VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(run, problem_id, t, int(arrival_rank[t]), decision[t], int(decision_token[t]), int(tokens[t]))
         for t in range(len(decision))],
    )


def read_live_rows(cache: Cache, run: str, problem_id: str) -> dict[str, np.ndarray]:
    """{"arrival", "decision", "decision_token", "tokens"} by trace index, for one problem."""
    rows = cache.con.execute(
        "SELECT idx, arrival, decision, decision_token, tokens_generated FROM live_traces "
        "WHERE run = ? AND problem_id = ? ORDER BY idx", [run, problem_id]).fetchall()
    return {
        "arrival": np.array([r[1] for r in rows], dtype=np.int64),
        "decision": np.array([r[2] for r in rows], dtype=object),
        "decision_token": np.array([r[3] for r in rows], dtype=np.int64),
        "tokens": np.array([r[4] for r in rows], dtype=np.int64),
    }


def read_live_orders(cache: Cache, run: str) -> dict[str, np.ndarray]:
    """{problem_id: (N,) trace indices in the order they reached their decision points live, then
    the traces that never arrived by index (the order `dp live --compare` replays)}; {} for a run
    without live rows."""
    rows = cache.con.execute(
        "SELECT problem_id, list(idx ORDER BY arrival < 0, arrival, idx) FROM live_traces WHERE run = ? "
        "GROUP BY problem_id", [run]).fetchall()
    return {pid: np.asarray(order, dtype=np.int64) for pid, order in rows}


def write_problem_settings(cache: Cache, run: str, problem_id: str, settings: dict) -> None:
    """Store (or replace) one problem's settings object, inside the caller's transaction."""
    cache.need_write()
    cache.con.execute("INSERT OR REPLACE INTO problem_settings VALUES (?, ?, ?)",
                      [run, problem_id, json.dumps(settings)])


def read_problem_settings(cache: Cache, run: str) -> dict[str, dict]:
    """{problem_id: settings object} of a run; {} for a run without any (or a cache from before them)."""
    tables = {r[0] for r in cache.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "problem_settings" not in tables:
        return {}
    rows = cache.con.execute("SELECT problem_id, settings FROM problem_settings WHERE run = ? ORDER BY problem_id",
                             [run]).fetchall()
    return {pid: json.loads(s) for pid, s in rows}


def runs_with_live_rows(cache: Cache) -> list[str]:
    """Runs with source 'live' that have rows in `live_traces`, by name."""
    rows = cache.con.execute(
        "SELECT r.run FROM runs r WHERE r.source = 'live' AND EXISTS "
        "(SELECT 1 FROM live_traces l WHERE l.run = r.run) ORDER BY r.run").fetchall()
    return [r for (r,) in rows]


def live_tokens_per_problem(cache: Cache, run: str) -> dict[str, int]:
    """{problem_id: tokens generated live, summed over the problem's traces}."""
    rows = cache.con.execute(
        "SELECT problem_id, sum(tokens_generated) FROM live_traces WHERE run = ? "
        "GROUP BY problem_id ORDER BY problem_id", [run]).fetchall()
    return {str(p): int(t or 0) for p, t in rows}
