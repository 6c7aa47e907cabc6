"""Helpers for tests that start `dp` as a real process and kill or interrupt it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dp.generate.watchdog import _stat, descendants

# the `dp` script as a user runs it (vLLM's spawned engine processes re-import the script, and with
# it `dp.interrupts`, which keeps Ctrl-C away from them); `python -m dp.cli` where it is missing
_SCRIPT = Path(sys.executable).with_name("dp")
DP = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "dp.cli"]


def _terminal_signals() -> None:
    """Ctrl-C as a terminal delivers it: a test run started in the background by a non-interactive
    shell (`make test &`, nohup) inherits SIGINT ignored, and `dp` keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """`dp ARGS` in its own session (so a group signal reaches it and its children only),
    with stdout and stderr read in the background into one buffer."""

    def __init__(self, *args: str, env: dict | None = None):
        self.p = subprocess.Popen([*DP, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                  start_new_session=True, preexec_fn=_terminal_signals)
        self.out, self.err = [], []
        self._threads = [threading.Thread(target=self._read, args=(s, buf), daemon=True)
                         for s, buf in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, buf: list[str]) -> None:
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(1)
            if not chunk:
                return
            buf.append(chunk.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for(self, pattern: str, timeout: float = 400) -> bool:
        """True once `pattern` (a regex) shows up in stdout or stderr; False if the process ends first."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            if re.search(pattern, self.text):
                return True
            if self.p.poll() is not None:
                time.sleep(0.3)
                return bool(re.search(pattern, self.text))
            time.sleep(0.2)
        return False

    def engines(self) -> dict[int, int]:
        """{pid: start time} of the engine processes under this dp (EngineCore, Worker)."""
        return {pid: start for pid, start in descendants(self.p.pid).items() if is_engine(pid)}

    def finish(self, timeout: float = 120) -> int:
        rc = self.p.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return rc


def is_engine(pid: int) -> bool:
    """A vLLM engine process (EngineCore, Worker) or another multiprocessing child."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    return "VLLM" in cmd or "multiprocessing" in cmd


def alive(procs: dict[int, int]) -> list[int]:
    """The pids of `procs` that still run (same start time: not a reused pid)."""
    return [pid for pid, start in procs.items() if (st := _stat(pid)) is not None and st[1] == start]


def wait_gone(procs: dict[int, int], timeout: float = 20) -> list[int]:
    """Wait until none of `procs` runs; returns those still alive after `timeout`."""
    t0 = time.time()
    while alive(procs) and time.time() - t0 < timeout:
        time.sleep(0.25)
    return alive(procs)


def kill_leftovers(procs: dict[int, int]) -> None:
    """Test cleanup: SIGKILL what is still alive, so a failing test leaves no engine behind."""
    import signal

    for pid in alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
