"""The live runner's judge thread: `Batched` groups the requests of one event-loop pass into one call."""

import asyncio
import threading

from dp.simulate.live.off_loop import Batched, off_loop


def test_requests_of_one_pass_go_to_one_call_in_order_and_each_gets_its_own_result():
    calls = []

    def double(requests):
        calls.append((list(requests), threading.current_thread().name))
        return [2 * r for r in requests]

    async def main():
        b = Batched(double)
        first = await asyncio.gather(*(b(i) for i in range(5)))  # five deltas of one engine step
        second = await b(10)  # a later one: a call of its own
        return first, second

    first, second = asyncio.run(main())
    assert first == [0, 2, 4, 6, 8] and second == 20
    assert [c[0] for c in calls] == [[0, 1, 2, 3, 4], [10]]
    assert all(name.startswith("dp-judge") for _, name in calls)


def test_requests_made_while_the_thread_is_busy_wait_for_the_next_call():
    gate = threading.Event()
    calls = []

    def slow(requests):
        calls.append(list(requests))
        gate.wait(5)
        return requests

    async def main():
        b = Batched(slow)
        a = asyncio.ensure_future(b("a"))
        while not calls:  # the first call has taken "a" and is running
            await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(b(x)) for x in ("b", "c")]
        await asyncio.sleep(0.05)
        gate.set()
        return await a, await asyncio.gather(*later)

    assert asyncio.run(main()) == ("a", ["b", "c"])
    assert calls == [["a"], ["b", "c"]]


def test_a_failing_call_fails_each_of_its_requests_and_a_cancelled_waiter_leaves_the_others():
    def boom(requests):
        raise ValueError(f"bad {len(requests)}")

    async def failing():
        b = Batched(boom)
        return await asyncio.gather(b(1), b(2), return_exceptions=True)

    out = asyncio.run(failing())
    assert [str(e) for e in out] == ["bad 2", "bad 2"]

    async def cancelled():
        b = Batched(lambda rs: [r + 1 for r in rs])
        x, y = asyncio.ensure_future(b(1)), asyncio.ensure_future(b(2))
        await asyncio.sleep(0)
        x.cancel()
        return await y, x

    got, x = asyncio.run(cancelled())
    assert got == 3 and x.cancelled()


def test_off_loop_runs_calls_one_at_a_time_in_the_order_made():
    seen = []

    async def main():
        await asyncio.gather(*(off_loop(seen.append, i) for i in range(20)))

    asyncio.run(main())
    assert seen == list(range(20))
