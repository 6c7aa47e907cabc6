"""Answer classes with a bounded time, in a worker process: for code that cannot grade in a main thread.

`dp.answers` bounds each Math-Verify step with `signal.alarm`, which works only in a
process's main thread; elsewhere (a server's recording thread) a pathological answer
such as a power tower can keep `group_answers` busy for good. A `Grader` runs
`dp.answers.group_answers` in a spawned worker process, in that process's main
thread, so Math-Verify's own per-step timeouts apply there, and waits at most
`timeout` seconds for the whole problem. Past that the worker is killed (a fresh one
starts on the next call) and the answers are grouped by their normalised strings
only (`classes_by_string`: equal strings are always equivalent answers; nothing else
is merged), which is what a Math-Verify timeout means everywhere in `dp`: not shown
equivalent. Timeouts are counted in `dp.answers.FAILURES["grading"]`.

Not here: extraction, correctness against a gold answer, or votes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from dp.answers import FAILURES, normalize
from dp.types import AnswerKind

DEFAULT_TIMEOUT_S = 30.0  # seconds for one problem's answers (Math-Verify: 2 s a step inside)
START_TIMEOUT_S = 120.0  # seconds for a worker to start (imports sympy and Math-Verify)


def classes_by_string(answers: Sequence[str | None], kind: AnswerKind) -> np.ndarray:
    """(n,) int32 classes by normalised string alone (-1: no answer), numbered by first appearance."""
    out = np.full(len(answers), -1, dtype=np.int32)
    seen: dict[str, int] = {}
    for i, a in enumerate(answers):
        s = normalize(a, kind) if a is not None else ""
        if s:
            out[i] = seen.setdefault(s, len(seen))
    return out


def _work(conn) -> None:
    """The worker: group each problem's answers it is sent, until it is sent None."""
    import math_verify  # noqa: F401 - loaded before `ready`, so a call's time is grading only

    from dp.answers import group_answers

    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the server went away without saying goodbye: nothing more to grade
            return
        if msg is None:
            return
        answers, kind = msg
        conn.send(group_answers(answers, AnswerKind(kind)).tolist())


class Grader:
    """`group_answers` in a worker process with a time limit; one call at a time (thread-safe)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self.timeout = float(timeout)
        self.timeouts = 0
        self._proc = None
        self._conn = None
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start the worker now (else on the first call); False when it could not be started."""
        with self._lock:
            try:
                self._ensure()
            except (OSError, RuntimeError):
                return False
            return True

    def _ensure(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        import multiprocessing as mp

        self._stop()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_work, args=(child,), name="dp-grader", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S) or parent.recv() != "ready":
            proc.kill()
            raise RuntimeError("the answer-grading worker did not start")
        self._proc, self._conn = proc, parent

    def classes(self, answers: Sequence[str | None], kind: AnswerKind) -> np.ndarray:
        """(n,) int32 answer classes as `dp.answers.group_answers` gives them, or, when that takes
        longer than `timeout` seconds (or no worker could be started), `classes_by_string`."""
        answers = list(answers)
        with self._lock:
            try:
                self._ensure()
                self._conn.send((answers, AnswerKind(kind).value))
                if self._conn.poll(self.timeout):
                    return np.asarray(self._conn.recv(), dtype=np.int32)
            except (EOFError, OSError, RuntimeError):  # no worker, or it died: a fresh one next time
                pass
            self.timeouts += 1
            FAILURES["grading"] += 1
            self._stop()
        return classes_by_string(answers, kind)

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def close(self) -> None:
        with self._lock:
            self._stop()
