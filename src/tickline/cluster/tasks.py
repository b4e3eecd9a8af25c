"""Ending background tasks in bounded time, whatever they are doing (the stop paths of cluster
mode: :class:`~tickline.cluster.jetstream.Follower`, the gateway, the engine node).

A cancel can be lost. On Python 3.11 ``asyncio.wait_for`` returns the awaited result instead
of raising ``CancelledError`` when the cancel and the result arrive in the same event-loop
turn (CPython gh-86296, fixed in 3.12) — and every nats-py request (JetStream API, KV) and
JetStream publish waits for its reply with ``wait_for``; nats-py's ``Client._flush_pending``
catches ``CancelledError`` outright. A loop task whose cancel was lost simply goes on to its
next ``await`` (its sleep, its queue), and a stop that cancelled it once and awaited it
waited for ever: issue 12's failover-test hang (the gateway's leader watch, which polls the
KV bucket every lease/4, lost the cancel of ``ClusterExchange.stop``; a stress of 1,000
follower stops against a real server left 19 stuck).

:func:`stop_tasks` therefore cancels again until each task is done (a task that lost one
cancel is found at its next ``await`` by the next one), up to a deadline, and
:func:`finish_within` bounds one awaitable step of a stop (an unsubscribe, a KV delete, closing
a connection). Neither swallows a cancel of the task that calls it, unlike
``with suppress(CancelledError): await task``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["RECANCEL_S", "finish_within", "stop_tasks"]

RECANCEL_S = 0.1
"""How long :func:`stop_tasks` waits after a cancel before cancelling again: a loop task
that did not lose its cancel ends within one loop turn; one that lost it is back at its
next ``await`` well within this."""


async def stop_tasks(*tasks: asyncio.Task[Any] | None, timeout: float = 5.0,
                     what: str = "tasks") -> bool:
    """Cancel ``tasks`` (None entries are skipped) and wait until every one is done,
    cancelling again every :data:`RECANCEL_S` those still running, for at most ``timeout``
    seconds. True when all ended; False (logged, naming them) when one still runs at the
    deadline — it does not ignore cancels for ever in this code base, so it is a bug.
    Meant for loop tasks without asynchronous clean-up (a repeated cancel would interrupt
    one).
    An exception a task ended with is retrieved and logged at debug level (its loop logs what
    it handles; a task that died of one is already over)."""
    pending = {t for t in tasks if t is not None and not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    first = True
    while pending:
        left = deadline - loop.time()
        if left <= 0:
            break
        if not first:  # harmless now, but worth seeing when a stop takes long
            log.debug("%s: cancelling %s again (a cancel was lost)", what,
                      ", ".join(sorted(t.get_name() for t in pending)))
        first = False
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_S, left))
    for task in tasks:
        if (task is not None and task.done() and not task.cancelled()
                and task.exception() is not None):
            log.debug("%s: %s had ended with %r", what, task.get_name(), task.exception())
    if pending:
        log.warning("%s: %s still running %.1f s after being cancelled", what,
                    ", ".join(sorted(t.get_name() for t in pending)), timeout)
        return False
    return True


async def finish_within(aw: Awaitable[Any], timeout: float, what: str) -> bool:
    """Run one step of a stop (``aw``) for at most ``timeout`` seconds; True when it ended
    (an exception it raised is logged at debug level: a stop goes on with its next step),
    False (logged) when it did not and was cancelled (by :func:`stop_tasks`)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:  # the stop itself was cancelled: so is its step
        task.cancel()
        raise
    if not done:
        log.warning("%s did not finish within %.1f s; abandoned", what, timeout)
        await stop_tasks(task, timeout=1.0, what=what)
        return False
    if not task.cancelled() and task.exception() is not None:
        log.debug("%s failed: %r", what, task.exception())
    return True
