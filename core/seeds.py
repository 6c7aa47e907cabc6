"""Seeds are data: every random choice derives from a recorded seed, never global state.

`trace_seed` gives each sampled trace its own seed from (run seed, problem id,
index), so any single trace can be regenerated. `rng` builds a local generator
from any mix of ints and strings.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _as_int(part: int | str) -> int:
    if isinstance(part, (int, np.integer)):
        return int(part) & 0xFFFFFFFFFFFFFFFF
    digest = hashlib.blake2b(str(part).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def derive(*parts: int | str) -> int:
    """A stable 31-bit seed from ints and strings (same inputs, same seed, on any machine)."""
    ss = np.random.SeedSequence([_as_int(p) for p in parts])
    return int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)


def trace_seed(run_seed: int, problem_id: str, index: int) -> int:
    """The sampling seed of trace `index` of `problem_id` in a run seeded with `run_seed`."""
    return derive(run_seed, "trace", problem_id, index)


def rng(*parts: int | str) -> np.random.Generator:
    """A local numpy generator seeded from `parts`."""
    return np.random.default_rng(np.random.SeedSequence([_as_int(p) for p in parts]))
