"""The live runner's one worker thread: policy and judge work off the event loop.

Judges and embedders take milliseconds a call; run on the event loop they would
stall every stream of the session (and a server's other routes). `off_loop`
hands a call to `judge_thread`, one thread shared by every problem of the
process, so calls run one at a time and in the order they were made (the
decisions are the replay's, which decides in arrival order).

`Batched` is `off_loop` for a function that takes many requests at once (an
embedder: MiniLM embeds 16 short texts in one call for the price of ~3 single
ones): the requests made in one pass of the event loop (the deltas one engine
step brought) and those made while the thread is busy go to one call, still in
the order they were made. Nothing here knows about policies or engines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

judge_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dp-judge")


def off_loop(fn, *args) -> asyncio.Future:
    """fn(*args) submitted to `judge_thread` now (calls run one at a time, in the order they were made)."""
    return asyncio.get_running_loop().run_in_executor(judge_thread, fn, *args)


class Batched:
    """`await batched(request)` -> `fn(requests)[k]`, with `fn` run in `judge_thread` on every request
    made before the call started (this one is the k-th of them), in the order they were made."""

    def __init__(self, fn: Callable[[list], list]):
        self.fn = fn
        self._lock = threading.Lock()  # the pending list is taken in the judge thread
        self._pending: list = []
        self._batch: asyncio.Future | None = None  # the result of the call that will take `_pending`

    async def __call__(self, request):
        loop = asyncio.get_running_loop()
        with self._lock:
            k = len(self._pending)
            self._pending.append(request)
            if self._batch is None:
                self._batch = batch = loop.create_future()
                loop.call_soon(self._submit, batch)  # after the other deltas of this pass have queued theirs
            else:
                batch = self._batch
        return (await asyncio.shield(batch))[k]  # one waiter cancelled never cancels the others' call

    def _submit(self, batch: asyncio.Future) -> None:
        def settle(call: asyncio.Future) -> None:
            if batch.done():
                return
            if call.cancelled():
                batch.cancel()
            elif call.exception() is not None:
                batch.set_exception(call.exception())
            else:
                batch.set_result(call.result())

        off_loop(self._take_and_run).add_done_callback(settle)

    def _take_and_run(self) -> list:
        with self._lock:
            requests, self._pending, self._batch = self._pending, [], None
        return self.fn(requests)
