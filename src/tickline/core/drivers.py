"""Consumer drivers: who runs an event processor's one consumer, and how it waits when idle.

An :class:`~tickline.core.processor.EventProcessor` has exactly one consumer, driven in one of
two ways:

* **thread mode** -- :class:`ThreadDriver`: a daemon thread the processor owns polls batches
  and, when nothing waits, parks per a :mod:`~tickline.core.wait` strategy (default
  :class:`~tickline.core.wait.BlockingWait`: a ``threading.Event``, no spinning);
* **caller-driven mode** -- :func:`run_async` (or the caller's own loop around
  :meth:`Doorbell.wait`): an asyncio task polls batches and, when idle, awaits a future.

Either way producers reach the consumer through one :class:`Doorbell`, and pay for a wake-up
only when the consumer is actually parked (one attribute load otherwise). No lost wake-up:
the consumer arms the bell *before* its last look for work and producers publish *before*
they look at the bell, so under the GIL at least one of them sees the other.

This module knows nothing about lanes or handlers: a driver gets ``poll(max_batch) -> int``
(run one batch, return its size), ``has_work()`` and ``stopping()`` callables.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from tickline.core.wait import BlockingWait, WaitStrategy

__all__ = ["Doorbell", "ThreadDriver", "resolve_soon", "run_async"]

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]", int]
"""A parked asyncio task: its loop, the future it awaits, and the loop's thread id."""


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def resolve_soon(waiter: Waiter) -> None:
    """Resolve a parked task's future from any thread: directly on the loop's own thread,
    through ``call_soon_threadsafe`` from others (a closed loop is ignored)."""
    loop, fut, ident = waiter
    if threading.get_ident() == ident:
        _resolve(fut)
        return
    try:
        loop.call_soon_threadsafe(_resolve, fut)
    except RuntimeError:  # that loop is closed
        pass


class Doorbell:
    """How producers wake the one consumer, paying only when it is parked.

    ``armed`` is true while the consumer is parked (a thread on the event, or a task on a
    future); producers test it after publishing and call :meth:`ring` only then.
    ``consumer_ident`` is the consumer's thread id (0 until it first polls or parks): the
    ``block`` policy uses it to refuse to wait for room on the consumer's own thread.
    """

    __slots__ = ("_event", "_waiter", "armed", "consumer_ident")

    def __init__(self) -> None:
        self.armed = False
        self.consumer_ident = 0
        self._event = threading.Event()
        self._waiter: Waiter | None = None

    @property
    def waiter(self) -> Waiter | None:
        """The parked consumer task, if one is awaiting :meth:`wait` now."""
        return self._waiter

    def ring(self) -> None:
        """Wake the parked consumer (any thread). Cheap no-op if it is not parked."""
        w = self._waiter
        if w is None:
            if self.armed:
                self._event.set()
            return
        self._waiter = None
        resolve_soon(w)

    def ring_for_stop(self) -> None:
        """Wake the consumer however it waits, armed or not (on stop)."""
        self._event.set()
        w = self._waiter
        if w is not None:
            self._waiter = None
            w[0].call_soon_threadsafe(_resolve, w[1])

    def park(self, ready: Callable[[], bool], wait: WaitStrategy) -> None:
        """Thread mode: return once ``ready()`` is true, waiting per ``wait``."""
        if wait.blocking:
            ev = self._event
            ev.clear()
            self.armed = True
            if not ready():
                ev.wait()
            self.armed = False
            return
        attempt = 0
        idle = wait.idle
        while not ready():
            idle(attempt)
            attempt += 1

    async def wait(self, ready: Callable[[], bool]) -> None:
        """Caller-driven mode: return once ``ready()`` is true (one task at a time).

        Registers a future that producers resolve -- directly when they run on the loop's
        thread, via ``call_soon_threadsafe`` from other threads. No polling, no sleeping.
        """
        if ready():
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.consumer_ident = threading.get_ident()
        self._waiter = (loop, fut, self.consumer_ident)
        self.armed = True
        try:
            if ready():
                return
            await fut
        finally:
            self._waiter = None
            self.armed = False


class ThreadDriver:
    """Thread mode: one daemon thread runs ``poll`` batch after batch, parks when idle.

    It returns once ``stopping()`` and nothing is left (so a stop drains everything
    accepted). An exception out of ``poll`` (a fail-fast deadline, or a bug) ends the thread
    and goes to ``on_failure``.
    """

    def __init__(self, name: str, *, poll: Callable[[int], int], max_batch: int,
                 has_work: Callable[[], bool], stopping: Callable[[], bool], bell: Doorbell,
                 on_failure: Callable[[BaseException], None],
                 wait: WaitStrategy | None = None) -> None:
        self._poll = poll
        self._max_batch = max_batch
        self._has_work = has_work
        self._stopping = stopping
        self._bell = bell
        self._on_failure = on_failure
        self.wait: WaitStrategy = wait if wait is not None else BlockingWait()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the consumer thread."""
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (up to ``timeout`` s); ``True`` if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        bell = self._bell
        bell.consumer_ident = threading.get_ident()
        poll, mb = self._poll, self._max_batch
        has_work, stopping = self._has_work, self._stopping
        wait = self.wait

        def ready() -> bool:
            return has_work() or stopping()

        try:
            while True:
                if poll(mb):
                    continue
                if stopping() and not has_work():
                    return
                bell.park(ready, wait)
        except BaseException as exc:  # fail-fast or a bug: record, stop accepting
            self._on_failure(exc)


async def run_async(*, poll: Callable[[int], int], max_batch: int,
                    has_work: Callable[[], bool], stopping: Callable[[], bool],
                    bell: Doorbell) -> None:
    """Caller-driven mode as one asyncio task: poll, yield, park; return once stopped and
    drained.

    Between batches it yields to the event loop (``asyncio.sleep(0)``) so producers on the
    same loop run; when idle it awaits the doorbell.
    """
    bell.consumer_ident = threading.get_ident()

    def ready() -> bool:
        return has_work() or stopping()

    while True:
        if poll(max_batch):
            await asyncio.sleep(0)
            continue
        if stopping() and not has_work():
            return
        await bell.wait(ready)
