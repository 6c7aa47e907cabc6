"""Which problems run at once in a live session: admission by traces in flight.

A live session runs many problems on one engine. What keeps the engine's batch
full is not a number of problems but a number of traces: a DeepPrune problem
starts all N traces at once, an ESC problem one wave, a DeepConf problem its
warm-up and then nothing while the warm-up's last trace finishes. `Admission`
counts the traces in flight across problems (started, not yet ended or
stopped) and lets the next problem in, in order, whenever fewer than
`max_traces` run (and, if set, fewer than `max_problems` problems). A problem
is let in only after the one before it has started its first trace (or ended),
so one quiet moment never admits every problem at once.

Decisions of one problem do not depend on the others, so admission changes the
wall time, never a decision. Memory is bounded by what is admitted: the
traces in flight, plus the problems they belong to. Nothing here knows about
policies or the engine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable


class Admission:
    """Counts traces in flight; admits problems while there is room."""

    def __init__(self, max_traces: int, max_problems: int | None = None):
        self.max_traces, self.max_problems = max_traces, max_problems
        self.traces = 0  # traces in flight now
        self.problems = 0  # problems admitted and not done
        self.peak_traces = 0
        self._changed = asyncio.Event()
        self._started = asyncio.Event()

    def trace_started(self) -> None:
        self.traces += 1
        self.peak_traces = max(self.peak_traces, self.traces)
        self._started.set()

    def trace_ended(self) -> None:
        self.traces -= 1
        self._changed.set()

    def _room(self) -> bool:
        return self.traces < self.max_traces and (self.max_problems is None or self.problems < self.max_problems)

    async def _wait_room(self) -> None:
        while not self._room():
            self._changed.clear()
            await self._changed.wait()

    async def run(self, items: Iterable, run_one: Callable[[object], Awaitable],
                  on_done: Callable[[object, object], None] | None = None) -> float:
        """`run_one(item)` for every item, admitted in order; the wall seconds. The first failure
        cancels the problems still running and is raised as itself (a DPError stays one line)."""

        async def one(item):
            try:
                result = await run_one(item)
            finally:
                self.problems -= 1
                self._changed.set()
            if on_done is not None:
                on_done(item, result)

        t0 = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                for item in items:
                    await self._wait_room()
                    self.problems += 1
                    self._started.clear()
                    task = group.create_task(one(item))
                    started = asyncio.ensure_future(self._started.wait())
                    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
                    started.cancel()
        except BaseExceptionGroup as eg:
            raise eg.exceptions[0] from None
        return time.perf_counter() - t0
