""":mod:`tickline.cluster.tasks` without a server: tasks that lose cancels still end, a task
that never ends is reported by name within the timeout, and neither helper swallows the
cancel of the task that calls it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.cluster.tasks import RECANCEL_S, finish_within, stop_tasks


async def loop_losing(cancels: int, fail: bool = False,
                      release: asyncio.Event | None = None) -> None:
    """A background loop that loses its first ``cancels`` cancels (as a request does when its
    reply and the cancel meet in 3.11's ``wait_for``), then ends like any loop (or dies of
    an error once it has lost them, with ``fail``); at any cancel once ``release`` is set."""
    lost = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if lost == cancels or (release is not None and release.is_set()):
                if fail:
                    raise RuntimeError("died") from None
                raise
            lost += 1


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), min_size=1, max_size=5))
def test_every_task_ends_whatever_cancels_it_loses(spec: list[tuple[int, bool]]) -> None:
    async def main() -> None:
        tasks = [asyncio.ensure_future(loop_losing(n, fail)) for n, fail in spec]
        await asyncio.sleep(0)
        started = time.monotonic()
        assert await stop_tasks(*tasks, None, timeout=5.0)
        assert all(t.done() for t in tasks)
        most = max(n for n, _ in spec)
        assert time.monotonic() - started < (most + 1) * RECANCEL_S + 1.0
        for t, (_, fail) in zip(tasks, spec, strict=True):
            assert t.cancelled() != fail  # an error is kept (retrieved), not turned into one

    asyncio.run(main())


def test_a_task_that_never_ends_is_named_within_the_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        release = asyncio.Event()
        stubborn = asyncio.ensure_future(loop_losing(10**9, release=release))
        stubborn.set_name("stubborn")
        await asyncio.sleep(0)  # running (a task cancelled before it starts never runs)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "tickline.cluster.tasks"):
            assert not await stop_tasks(stubborn, timeout=0.5, what="the test")
        assert 0.5 <= time.monotonic() - started < 1.5
        assert "the test: stubborn still running" in caplog.text
        release.set()
        assert await stop_tasks(stubborn)

    asyncio.run(main())


def test_the_callers_cancel_is_not_swallowed() -> None:
    async def main() -> None:
        release = asyncio.Event()
        inner = asyncio.ensure_future(loop_losing(10**9, release=release))
        await asyncio.sleep(0)
        stopping = asyncio.ensure_future(stop_tasks(inner, timeout=30))
        await asyncio.sleep(0.05)
        stopping.cancel()  # e.g. a timeout around the whole shutdown
        with pytest.raises(asyncio.CancelledError):
            await stopping
        step = asyncio.ensure_future(asyncio.sleep(3600))
        finishing = asyncio.ensure_future(finish_within(step, 30, "a step"))
        await asyncio.sleep(0.05)
        finishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await finishing
        await asyncio.sleep(0)
        assert step.cancelled()  # the step goes with the stop that ran it
        release.set()
        assert await stop_tasks(inner)

    asyncio.run(main())


def test_finish_within_bounds_a_step(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async def answers() -> int:
            await asyncio.sleep(0.01)
            return 1

        async def fails() -> None:
            raise ConnectionError("gone")

        assert await finish_within(answers(), 1.0, "quick")
        assert await finish_within(fails(), 1.0, "failing")  # ended: the stop goes on
        never = asyncio.ensure_future(loop_losing(1))
        await asyncio.sleep(0)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, "tickline.cluster.tasks"):
            assert not await finish_within(never, 0.2, "closing NATS")
        assert time.monotonic() - started < 1.0
        assert never.done()
        assert "closing NATS did not finish within 0.2 s" in caplog.text

    asyncio.run(main())
