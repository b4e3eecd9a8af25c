"""Wait strategies: how one side of a queue waits for the other, each a named trade-off.

As the LMAX Disruptor's ``WaitStrategy`` classes: waiting is never a hidden ``sleep`` but an
object chosen by the caller, whose docstring states what it costs (CPU while idle) and what it
buys (wake-up latency). Two components use them:

* :class:`~tickline.core.shm_ring.SpscShmRing` -- each side of a shared-memory ring waits for
  data or room (``wait=``); a blocking strategy parks on the ring's FIFO doorbell.
* :class:`~tickline.core.processor.EventProcessor` in thread mode -- the consumer thread waits
  for events (``wait=``); a blocking strategy parks on a ``threading.Event`` that producers
  set only when the consumer is parked.

The latencies in the class docstrings are the shared-memory ring's (``tickline bench
processor``, producer write -> consumer has it, one record per 250 µs, see
docs/benchmarks.md). Inside one process the GIL changes the picture: a spinning consumer
*thread* holds the GIL its producer needs. Measured for the processor's consumer thread the
same way (``submit()`` -> handler, one event per 250 µs, shared 2-core machine under load;
an ad-hoc run, p50 / p99 / consumer CPU): ``SpinWait`` 115-130 µs / 0.3-1.1 ms / 95%,
``YieldWait`` 22-40 µs / 0.1-0.7 ms / 80%, ``BackoffWait`` 25-35 µs / 0.15-0.5 ms / 70%,
``BlockingWait`` 35-37 µs / 0.3-0.4 ms / 10%. Hence :class:`BlockingWait` is the default
there too: the others buy at most ~15 µs of p50 with most of a core.

Contract of a strategy: a non-blocking one (``blocking = False``) gets ``idle(attempt)``
between re-checks (``attempt`` counts from 0 within one wait); a blocking one is parked on the
component's doorbell instead and ``recheck`` bounds how long a lost wake-up can delay it.
"""

from __future__ import annotations

import os
import time
from typing import Protocol

__all__ = ["BackoffWait", "BlockingWait", "SpinWait", "WaitStrategy", "YieldWait"]


class WaitStrategy(Protocol):
    """How a waiter waits: a named latency/CPU trade-off.

    ``idle(attempt)`` is called between re-checks (``attempt`` counts from 0 within one
    wait). Strategies with ``blocking = True`` are instead parked on the component's doorbell.
    """

    blocking: bool

    def idle(self, attempt: int) -> None:
        """Pause before the next re-check."""


class SpinWait:
    """Re-check immediately, forever: the lowest wake-up latency (measured p50 ~3.5 µs
    producer-write to consumer-has-it, in Python, across processes) at the price of a whole
    core at 100% while waiting. Only for a dedicated core; on a shared 2-core machine it
    steals time from the very process it waits for (and, as a thread, the GIL from the
    producer thread)."""

    blocking = False

    def idle(self, attempt: int) -> None:
        """Do nothing."""


class YieldWait:
    """``sched_yield()`` between re-checks: spin-like latency (measured p50 ~3.5 µs) when the
    core is otherwise idle, and gives the core away when another thread is runnable. Still
    100% CPU while waiting."""

    blocking = False

    def idle(self, attempt: int) -> None:
        """Yield the CPU to any other runnable thread."""
        os.sched_yield()


class BackoffWait:
    """Spin ``spins`` times, yield ``yields`` times, then sleep with exponential back-off from
    ``min_sleep`` up to ``max_sleep`` seconds (the Disruptor's ``SleepingWaitStrategy``).
    Under sustained load it is still spinning when the next batch lands (throughput of a
    spin); when idle its wake-up latency is bounded by ``max_sleep`` plus timer slack and CPU
    falls toward zero. At a trickle it is the worst of both: one record per 250 µs measured
    p50 ~43-55 µs at 37% CPU. For bulk transfer only (e.g. the producer side of a saturated
    ring)."""

    blocking = False

    def __init__(self, spins: int = 64, yields: int = 64, min_sleep: float = 1e-5,
                 max_sleep: float = 1e-3) -> None:
        if not 0 < min_sleep <= max_sleep:
            raise ValueError(f"need 0 < min_sleep <= max_sleep, got {min_sleep!r}, "
                             f"{max_sleep!r}")
        self.spins = spins
        self.yields = yields
        self.min_sleep = min_sleep
        self.max_sleep = max_sleep

    def idle(self, attempt: int) -> None:
        """Spin, then yield, then sleep ever longer (capped)."""
        if attempt < self.spins:
            return
        attempt -= self.spins
        if attempt < self.yields:
            os.sched_yield()
            return
        attempt -= self.yields
        time.sleep(min(self.min_sleep * (1 << min(attempt, 20)), self.max_sleep))


class BlockingWait:
    """Park in the kernel on a doorbell until the other side rings it: near-zero CPU while
    idle; wake-up latency is a doorbell write + a scheduler wake-up (shm ring: measured p50
    ~18 µs at 5% CPU for one record per 250 µs). The other side pays one load per call to
    see whether it must ring. Where the doorbell can lose a wake-up (the shm ring's flag and
    counter are two stores that x86 may reorder against the following load), ``recheck``
    seconds bound the delay, after which the waiter re-checks; the processor's in-process
    doorbell cannot lose one, so there it parks without a timeout. The default: on a shared
    machine it is the best trade-off measured, and bulk throughput with it matched back-off
    (15-19 M records/s either way)."""

    blocking = True

    def __init__(self, recheck: float = 0.01) -> None:
        if recheck <= 0:
            raise ValueError(f"recheck must be > 0, got {recheck!r}")
        self.recheck = recheck

    def idle(self, attempt: int) -> None:
        """Fallback when no doorbell exists: sleep ``recheck`` seconds."""
        time.sleep(self.recheck)
