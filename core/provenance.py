"""Provenance that travels with every result: package version, git hash, time.

Stored in the `runs` and `sim_points` tables and in every `--json` output.
"""

from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from pathlib import Path

from dp import __version__


@functools.lru_cache(maxsize=1)
def git_hash() -> str | None:
    """The commit of the package's own checkout (with '+dirty' if modified), or None."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def stamp() -> dict:
    """{'dp_version', 'git_hash', 'created_at'} for a result record."""
    return {
        "dp_version": __version__,
        "git_hash": git_hash(),
        "created_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }
