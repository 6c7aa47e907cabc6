"""Opening a DuckDB file under its lock: retry while another process holds it.

DuckDB locks the file per process: one read-write connection excludes every
other process, read-only connections exclude writers. `connect` retries a
locked file with growing pauses for `wait` seconds (default `DP_LOCK_WAIT`, 10)
and then gives up with a one-line `CacheLocked` (a `DPError`). Nothing else about caches here.
"""

from __future__ import annotations

import os
import time

import duckdb

from dp.errors import DPError


class CacheLocked(DPError):
    """Another process held the cache for longer than we waited (a caller may wait again)."""


def lock_wait() -> float:
    """Seconds to retry a locked cache before giving up (DP_LOCK_WAIT, default 10)."""
    try:
        return max(0.0, float(os.environ.get("DP_LOCK_WAIT", "10")))
    except ValueError:
        raise DPError(f"DP_LOCK_WAIT must be a number of seconds, got {os.environ['DP_LOCK_WAIT']!r}") from None


def connect(path: str, read_only: bool, wait: float | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to `path`, waiting up to `wait` seconds for another process's lock."""
    wait = lock_wait() if wait is None else wait
    deadline, pause = time.monotonic() + wait, 0.05
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" not in msg.lower():
                raise DPError(f"cannot open cache {path}: {msg.splitlines()[0]}") from None
            if time.monotonic() >= deadline:
                raise CacheLocked(f"cache {path} is locked by another process (waited {wait:g} s); "
                              "wait for it or use another --cache") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        except duckdb.Error as e:
            raise DPError(f"{path} is not a DuckDB file ({str(e).splitlines()[0]})") from None
