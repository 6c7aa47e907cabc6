"""The `live_traces` table: what `dp live` decided per trace, written and read back.

Writing happens inside the caller's transaction (with the problem's traces), so a
problem of a live run is stored whole or not at all. Reading back returns one
problem's rows as arrays by trace index, which is what resuming an interrupted
live run needs. No pruning logic here.
"""

from __future__ import annotations

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
    """{problem_id: (N,) trace indices in the order they reached their decision points live}; {} for a
    run without live rows. A problem where some trace never arrived is left out."""
    rows = cache.con.execute(
        "SELECT problem_id, list(idx ORDER BY arrival), min(arrival) FROM live_traces WHERE run = ? "
        "GROUP BY problem_id", [run]).fetchall()
    return {pid: np.asarray(order, dtype=np.int64) for pid, order, low in rows if low >= 0}
