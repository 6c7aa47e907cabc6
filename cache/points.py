"""The `sim_points` table: simulator results stored for `dp figures`, appended and read back.

Only SQL lives here; what a point means (its fields, when it is current) is `dp.simulate.replay.sweep`'s
and `dp.figures.points`' business.
"""

from __future__ import annotations

from collections.abc import Sequence

from dp.cache.store import Cache


def append_points(cache: Cache, rows: Sequence[tuple]) -> list[int]:
    """Append rows (every `sim_points` column but the first, `point_id`) inside the caller's
    transaction; returns the point ids given to them, in order."""
    cache.need_write()
    start = max_point_id(cache) + 1
    ids = list(range(start, start + len(rows)))
    cache.con.executemany(
        "INSERT INTO sim_points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(pid, *row) for pid, row in zip(ids, rows)])
    return ids


def max_point_id(cache: Cache) -> int:
    """The largest point id stored (0 when none)."""
    return int(cache.con.execute("SELECT coalesce(max(point_id), 0) FROM sim_points").fetchall()[0][0])


def points_after(cache: Cache, point_id: int) -> list[int]:
    """Ids of the points stored after `point_id`."""
    return [int(i) for (i,) in cache.con.execute(
        "SELECT point_id FROM sim_points WHERE point_id > ? ORDER BY point_id", [point_id]).fetchall()]


def read_points(cache: Cache, run: str) -> list[tuple]:
    """(point_id, result JSON, dp_version, git_hash, created_at) of every point of `run`, in order."""
    return cache.con.execute(
        "SELECT point_id, result, dp_version, git_hash, created_at FROM sim_points "
        "WHERE run = ? ORDER BY point_id", [run]).fetchall()
