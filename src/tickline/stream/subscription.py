"""One subscriber's side of the bus: its bounded queue, slow-consumer policy and counters.

A :class:`Subscription` is created by :meth:`~tickline.stream.bus.Bus.subscribe` and fed by
:meth:`~tickline.stream.bus.Bus.publish_many`; :class:`Policy` decides what happens when a
publish would take it past its ``capacity`` (see :mod:`tickline.stream.bus` for the whole
contract). The queue holds the published batches themselves as chunks (shared, never
copied) or, under ``conflate``, the latest message per key.
"""

from __future__ import annotations

import asyncio
import enum
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tickline.stream.bus import Bus

__all__ = [
    "BatchCallback",
    "Callback",
    "Chunk",
    "Filter",
    "KeyFunction",
    "Policy",
    "SubscriberDisconnected",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionStatistics",
    "default_conflation_key",
]

Chunk = tuple[str, Sequence[Any]]
"""A published batch as a subscriber receives it: ``(topic, messages)``; read-only."""

Callback = Callable[[Any], object]
BatchCallback = Callable[[str, Sequence[Any]], object]
Filter = Callable[[Any], bool]
KeyFunction = Callable[[Any], Hashable]


class Policy(enum.StrEnum):
    """What a subscription does when a publish would take it past its capacity."""

    DROP_OLDEST = "drop_oldest"
    """Discard the oldest queued messages to make room (counted in ``dropped``)."""
    CONFLATE = "conflate"
    """Keep only the latest message per key; a new key when full evicts the oldest key
    (replacements are counted in ``conflated``, evictions in ``dropped``)."""
    DISCONNECT = "disconnect"
    """Close the subscription (counted in ``disconnects``); the messages that did not fit
    are counted in ``dropped``. What was queued before stays readable, then the consumer
    gets :class:`SubscriberDisconnected`."""


class SubscriptionClosed(Exception):
    """Raised by ``get``/``get_batch``/``get_chunks`` once a subscription is closed and its
    queue is empty (``async for`` simply ends)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"subscription {name!r} is closed: {reason}")
        self.name = name
        self.reason = reason


class SubscriberDisconnected(SubscriptionClosed):
    """The subscription was closed by its ``disconnect`` policy or after ``max_errors``
    failures (not by its owner); ``reason`` says which. Raised to consumers, including
    ``async for``, once what was queued before has been read."""


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """A frozen view of one subscription's counters (all counts are messages).

    ``offered`` reached the subscription (after its filter), ``consumed`` were taken by the
    consumer; ``queued`` are waiting now and ``high_water`` is the most ever waiting, never
    above ``capacity``. ``filtered`` were rejected by the filter; ``dropped`` discarded by
    the policy (or by a disconnect); ``conflated`` replaced by a newer message with the same
    key; ``errors`` counts exceptions raised by the callback, filter or key function.
    """

    name: str
    pattern: str
    policy: str
    capacity: int
    queued: int
    high_water: int
    offered: int
    consumed: int
    filtered: int
    dropped: int
    conflated: int
    errors: int
    disconnects: int
    closed: bool
    close_reason: str



def default_conflation_key(msg: Any) -> Hashable:
    """The conflation key of ``msg`` within its topic: ``msg.conflation_key()`` when the
    message defines it (a depth delta keys by side and price), else ``None`` -- one slot per
    topic, i.e. keep the latest message of each topic (right for BBO and bars)."""
    method = getattr(msg, "conflation_key", None)
    return method() if method is not None else None


class Subscription:
    """One subscriber's bounded queue, policy and counters. Created by :meth:`Bus.subscribe`.

    Consume it as an async iterator (``async for msg in sub``), by batch
    (``await sub.get_batch()``, ``await sub.get_chunks()``), synchronously (``get_nowait``,
    ``drain``), or by giving :meth:`Bus.subscribe` a callback. ``close()`` unsubscribes.
    Not thread-safe: use it from the bus's own loop/thread.
    """

    __slots__ = (
        "_batch_callback", "_bus", "_callback", "_chunks", "_closed", "_conflated",
        "_conflated_q", "_consumed", "_disconnects", "_dropped", "_errors", "_filter",
        "_filtered", "_head", "_high_water", "_key", "_max_errors", "_offered", "_scheduled",
        "_size", "_tokens", "_waiter", "admin", "capacity", "close_reason", "last_error",
        "name", "pattern", "policy",
    )

    def __init__(
        self,
        bus: Bus,
        pattern: str,
        tokens: tuple[str, ...],
        *,
        name: str,
        capacity: int,
        policy: Policy,
        filter: Filter | None,
        key: KeyFunction | None,
        callback: Callback | None,
        batch_callback: BatchCallback | None,
        max_errors: int | None,
        admin: bool,
    ) -> None:
        self._bus = bus
        self.pattern = pattern
        self._tokens = tokens
        self.name = name
        self.capacity = capacity
        self.policy = policy
        self.admin = admin
        self._filter = filter
        self._key = key if key is not None else default_conflation_key
        self._callback = callback
        self._batch_callback = batch_callback
        self._max_errors = max_errors
        # drop_oldest / disconnect: a deque of chunks (topic, list) with ``_head`` messages
        # of the first chunk already consumed; ``_size`` messages in all.
        self._chunks: deque[Chunk] = deque()
        self._head = 0
        # conflate: latest message per (topic, key), in first-arrival order. An OrderedDict,
        # not a dict: popping a plain dict from the front leaves holes that make every later
        # ``next(iter(d))`` scan them.
        self._conflated_q: OrderedDict[tuple[str, Hashable], Any] = OrderedDict()
        self._size = 0
        self._high_water = 0
        self._offered = 0
        self._consumed = 0
        self._filtered = 0
        self._dropped = 0
        self._conflated = 0
        self._errors = 0
        self._disconnects = 0
        self._closed = False
        self.close_reason = ""
        self.last_error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._scheduled = False

    # -- publisher side (called by the bus) -----------------------------------------------

    def _offer(self, topic: str, msgs: Sequence[Any]) -> int:
        """Enqueue a published batch under the policy; return how many were accepted."""
        if self._filter is not None:
            msgs = self._apply_filter(msgs)
            if not msgs:
                return 0
        n = len(msgs)
        self._offered += n
        policy = self.policy
        if policy is Policy.CONFLATE:
            self._offer_conflate(topic, msgs)
        else:
            size = self._size + n
            if size > self.capacity:
                if policy is Policy.DISCONNECT:
                    self._dropped += n
                    self._disconnects += 1
                    self._bus._on_disconnect(self, "slow consumer: queue full")
                    return 0
                self._chunks.append((topic, msgs))
                self._size = size
                self._trim()
            else:
                self._chunks.append((topic, msgs))
                self._size = size
        if self._size > self._high_water:
            self._high_water = self._size
        self._wake()
        return n

    def _apply_filter(self, msgs: Sequence[Any]) -> Sequence[Any]:
        pred = self._filter
        assert pred is not None
        try:
            kept = [m for m in msgs if pred(m)]
        except Exception as exc:  # a failing filter is this subscriber's problem only
            self._fail(exc)
            return ()
        self._filtered += len(msgs) - len(kept)
        return kept

    def _offer_conflate(self, topic: str, msgs: Sequence[Any]) -> None:
        queue = self._conflated_q
        key_of = self._key
        capacity = self.capacity
        try:
            for msg in msgs:
                key = (topic, key_of(msg))
                if key in queue:
                    self._conflated += 1
                    queue[key] = msg
                    continue
                if len(queue) >= capacity:
                    queue.popitem(last=False)
                    self._dropped += 1
                queue[key] = msg
        except Exception as exc:
            self._fail(exc)
        self._size = len(queue)

    def _trim(self) -> None:
        """drop_oldest: discard from the front until ``capacity`` messages remain."""
        chunks = self._chunks
        excess = self._size - self.capacity
        self._dropped += excess
        self._size = self.capacity
        while excess:
            topic, msgs = chunks[0]
            left = len(msgs) - self._head
            if left <= excess:
                chunks.popleft()
                self._head = 0
                excess -= left
            else:
                # Copy the tail (never mutate a shared batch) so the dropped head is freed.
                chunks[0] = (topic, msgs[self._head + excess:])
                self._head = 0
                excess = 0

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._callback is not None or self._batch_callback is not None:
            bus = self._bus
            if not self._scheduled:
                self._scheduled = True
                bus._ready.append(self)
            if not bus._pump_pending:
                bus._request_pump()

    def _fail(self, exc: BaseException) -> None:
        self._errors += 1
        self.last_error = exc
        if self._max_errors is not None and self._errors >= self._max_errors:
            self._bus._on_disconnect(self, f"{self._errors} errors, last: {exc!r}")

    def _end(self, reason: str) -> None:
        """Mark closed (by unsubscribe or a policy) and wake a waiting consumer."""
        if self._closed:
            return
        self._closed = True
        self.close_reason = reason
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- consumer side --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Closed by :meth:`close`, the ``disconnect`` policy or ``max_errors``."""
        return self._closed

    def __len__(self) -> int:
        """Messages queued now. O(1)."""
        return self._size

    def __bool__(self) -> bool:
        """Always true: an empty subscription is still a subscription (``len`` is 0)."""
        return True

    def get_nowait(self) -> Any:
        """Take the oldest queued message. O(1). Raises :class:`asyncio.QueueEmpty` if none."""
        if not self._size:
            raise asyncio.QueueEmpty
        self._size -= 1
        self._consumed += 1
        if self.policy is Policy.CONFLATE:
            return self._conflated_q.popitem(last=False)[1]
        msgs = self._chunks[0][1]
        msg = msgs[self._head]
        self._head += 1
        if self._head == len(msgs):
            self._chunks.popleft()
            self._head = 0
        return msg

    def get_chunks_nowait(self) -> list[Chunk]:
        """Take everything queued as ``(topic, messages)`` chunks (the zero-copy path: the
        lists are the published batches, shared with other subscribers -- do not mutate).
        O(chunks). Empty list when nothing is queued."""
        if not self._size:
            return []
        self._consumed += self._size
        self._size = 0
        if self.policy is Policy.CONFLATE:
            queue = self._conflated_q
            self._conflated_q = OrderedDict()
            return [(topic, (msg,)) for (topic, _key), msg in queue.items()]
        chunks = list(self._chunks)
        self._chunks.clear()
        if self._head:
            topic, msgs = chunks[0]
            chunks[0] = (topic, msgs[self._head:])
            self._head = 0
        return chunks

    def drain(self, limit: int | None = None) -> list[Any]:
        """Take up to ``limit`` (default all) queued messages, oldest first. O(n)."""
        if limit is None or limit >= self._size:
            out: list[Any] = []
            for _topic, msgs in self.get_chunks_nowait():
                out.extend(msgs)
            return out
        return [self.get_nowait() for _ in range(max(0, limit))]

    def _wait(self) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        return waiter

    def _raise_if_ended(self) -> None:
        if self._closed:
            if self.close_reason == "unsubscribed":
                raise SubscriptionClosed(self.name, self.close_reason)
            raise SubscriberDisconnected(self.name, self.close_reason)

    async def get(self) -> Any:
        """Wait for and take the oldest message. Raises :class:`SubscriptionClosed` once
        unsubscribed and empty, :class:`SubscriberDisconnected` once disconnected and empty."""
        while not self._size:
            self._raise_if_ended()
            await self._wait()
        return self.get_nowait()

    async def get_batch(self, limit: int | None = None) -> list[Any]:
        """Wait until at least one message is queued, then take up to ``limit`` of them."""
        while not self._size:
            self._raise_if_ended()
            await self._wait()
        return self.drain(limit)

    async def get_chunks(self) -> list[Chunk]:
        """Wait until something is queued, then take it all as chunks
        (see :meth:`get_chunks_nowait`)."""
        while not self._size:
            self._raise_if_ended()
            await self._wait()
        return self.get_chunks_nowait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        if self._size:
            return self.get_nowait()
        try:
            return await self.get()
        except SubscriberDisconnected:
            raise
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe (idempotent). A callback is not called again; an iterator consumer
        can still read what was queued, then ``async for`` ends."""
        self._bus.unsubscribe(self)

    def statistics(self) -> SubscriptionStatistics:
        """A frozen snapshot of the counters. O(1)."""
        return SubscriptionStatistics(
            name=self.name, pattern=self.pattern, policy=self.policy.value,
            capacity=self.capacity, queued=self._size, high_water=self._high_water,
            offered=self._offered, consumed=self._consumed, filtered=self._filtered,
            dropped=self._dropped, conflated=self._conflated, errors=self._errors,
            disconnects=self._disconnects, closed=self._closed, close_reason=self.close_reason,
        )

    def __repr__(self) -> str:
        return (f"Subscription({self.name!r}, pattern={self.pattern!r}, "
                f"policy={self.policy.value}, queued={self._size}/{self.capacity})")
