"""The in-process pub/sub bus: named topics, wildcards, bounded per-subscriber queues.

Topics are dot-separated tokens (``trades.AAPL``, ``bars.AAPL.1s``, ``exec.42``). A
subscription pattern may use NATS-style wildcards: ``*`` matches exactly one token, ``>``
(last token only) matches one or more remaining tokens. ``depth.*`` matches ``depth.AAPL``
but not ``depth`` or ``depth.AAPL.x``; ``bars.>`` matches ``bars.AAPL.1s``.

Contract
--------

* **Single-threaded.** The bus belongs to one event loop (or one thread when used without a
  loop). :meth:`Bus.publish` and :meth:`Bus.publish_many` are synchronous, never await and
  never run subscriber code: they only append to subscriber queues. Callback subscribers run
  later, from :meth:`Bus.pump` (scheduled once per publish cycle with ``loop.call_soon``
  when a loop is running, or called by hand otherwise); async-iterator subscribers are woken
  by resolving the one future they are waiting on, if they are waiting. No task is created
  per message or per subscriber.
* **Bounded.** Every subscription has a ``capacity`` (messages) and a slow-consumer policy
  for when a publish would exceed it (:class:`Policy`): ``drop_oldest`` discards the oldest
  queued messages, ``conflate`` keeps only the latest message per key, ``disconnect`` closes
  the subscription. Each counts what it did (:meth:`Subscription.statistics`). A
  subscription never holds more than ``capacity`` messages, whatever its consumer does.
* **Batches are shared, not copied.** :meth:`Bus.publish_many` appends the caller's list as
  one chunk to every matching unfiltered subscriber's queue, so fan-out costs one append per
  subscriber per batch rather than per message. The bus takes ownership of that list: the
  publisher must not mutate it afterwards, and consumers that receive chunks
  (:meth:`Subscription.get_chunks`) must not mutate them either.
* **Cheap when nobody listens.** The subscribers of each published topic are cached
  (topic -> tuple); the cache is cleared on every subscribe/unsubscribe. Publishing to a
  topic without subscribers is one dict lookup. :meth:`Bus.has_subscribers` lets a
  publisher skip building messages nobody will receive.
* **Isolation.** A subscriber that raises (callback, filter or key function) is counted and,
  after ``max_errors`` failures, closed; it never stops the publisher or other subscribers.
* **Private namespaces.** Topics whose first token is in ``private_prefixes`` (default
  ``exec``) are per-account streams. A pattern starting with a wildcard never matches them,
  and ``exec.*``/``exec.>`` need ``admin=True``; an ordinary subscriber must name the exact
  topic (``exec.42``), which the gateway authorizes.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Bus",
    "BusStatistics",
    "Chunk",
    "Policy",
    "SubscriberDisconnected",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionStatistics",
    "default_conflation_key",
    "topic_matches",
]

Chunk = tuple[str, Sequence[Any]]
"""A published batch as a subscriber receives it: ``(topic, messages)``; read-only."""

Callback = Callable[[Any], object]
BatchCallback = Callable[[str, Sequence[Any]], object]
Filter = Callable[[Any], bool]
KeyFunction = Callable[[Any], Hashable]

_CACHE_LIMIT = 65_536  # distinct topics remembered before the match cache starts over


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


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """A frozen view of the bus's counters.

    ``published`` counts messages handed to :meth:`Bus.publish`/:meth:`Bus.publish_many`
    (``publish_calls`` the calls), ``unrouted`` those that matched no subscriber,
    ``deliveries`` the message copies enqueued to subscribers. ``dropped``, ``conflated``,
    ``errors`` and ``disconnects`` sum the subscriptions' counters (including closed ones).
    """

    subscriptions: int
    topics_cached: int
    publish_calls: int
    published: int
    unrouted: int
    deliveries: int
    dropped: int
    conflated: int
    errors: int
    disconnects: int
    pump_runs: int
    subscribers: tuple[SubscriptionStatistics, ...]


def default_conflation_key(msg: Any) -> Hashable:
    """The conflation key of ``msg`` within its topic: ``msg.conflation_key()`` when the
    message defines it (a depth delta keys by side and price), else ``None`` -- one slot per
    topic, i.e. keep the latest message of each topic (right for BBO and bars)."""
    method = getattr(msg, "conflation_key", None)
    return method() if method is not None else None


def _split_pattern(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be a non-empty string, got {pattern!r}")
    tokens = tuple(pattern.split("."))
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"pattern {pattern!r} has an empty token")
        if token == ">" and i != len(tokens) - 1:
            raise ValueError(f"pattern {pattern!r}: '>' may only be the last token")
        if token not in ("*", ">") and ("*" in token or ">" in token):
            raise ValueError(f"pattern {pattern!r}: wildcards must be whole tokens")
    return tokens


def _check_topic(topic: str) -> tuple[str, ...]:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    tokens = tuple(topic.split("."))
    for token in tokens:
        if not token or "*" in token or ">" in token:
            raise ValueError(f"topic {topic!r} must be dot-separated tokens without wildcards")
    return tokens


def _tokens_match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    n = len(pattern)
    for i, token in enumerate(pattern):
        if token == ">":
            return len(topic) > i
        if i >= len(topic):
            return False
        if token != "*" and token != topic[i]:
            return False
    return n == len(topic)


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``pattern`` (with ``*``/``>`` wildcards) matches the concrete ``topic``.

    Pure wildcard semantics; the bus additionally keeps wildcard-first patterns out of
    private namespaces.
    """
    return _tokens_match(_split_pattern(pattern), _check_topic(topic))


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


class Bus:
    """Topic-based publish/subscribe with bounded subscriber queues (see the module doc).

    ``default_capacity`` and ``default_policy`` apply to subscriptions that do not set their
    own. ``pump_batch`` bounds how many messages one callback subscriber handles per pump
    turn, so a busy subscriber cannot monopolise the loop.
    """

    def __init__(
        self,
        *,
        default_capacity: int = 10_000,
        default_policy: Policy | str = Policy.DROP_OLDEST,
        private_prefixes: Iterable[str] = ("exec",),
        pump_batch: int = 1_000,
    ) -> None:
        if default_capacity <= 0:
            raise ValueError(f"default_capacity must be positive, got {default_capacity}")
        if pump_batch <= 0:
            raise ValueError(f"pump_batch must be positive, got {pump_batch}")
        self.default_capacity = default_capacity
        self.default_policy = Policy(default_policy)
        self.private_prefixes = frozenset(private_prefixes)
        self.pump_batch = pump_batch
        self._subs: list[Subscription] = []
        self._cache: dict[str, tuple[Subscription, ...]] = {}
        self._prefix_cache: dict[str, bool] = {}
        self._ready: list[Subscription] = []
        self._pump_pending = False
        self._names = itertools.count(1)
        self._publish_calls = 0
        self._published = 0
        self._unrouted = 0
        self._deliveries = 0
        self._pump_runs = 0
        self._gone_dropped = 0
        self._gone_conflated = 0
        self._gone_errors = 0
        self._gone_disconnects = 0

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        callback: Callback | None = None,
        *,
        batch_callback: BatchCallback | None = None,
        filter: Filter | None = None,
        capacity: int | None = None,
        policy: Policy | str | None = None,
        key: KeyFunction | None = None,
        max_errors: int | None = None,
        admin: bool = False,
        name: str | None = None,
    ) -> Subscription:
        """Subscribe to ``pattern``; returns the :class:`Subscription`. O(1) (clears the
        topic cache).

        ``callback(msg)`` (or ``batch_callback(topic, msgs)``) makes a push subscriber, run
        from :meth:`pump`; without either, consume the subscription as an async iterator or
        with its ``get*``/``drain`` methods. ``filter(msg) -> bool`` keeps only matching
        messages (applied at publish, before the queue). ``key(msg)`` is the conflation key
        within a topic for ``policy="conflate"`` (default :func:`default_conflation_key`).
        ``max_errors``: close the subscription after this many exceptions from its callback,
        filter or key function (default: never; each is counted). ``admin=True`` allows
        wildcards over private namespaces (``exec.*``, ``>``).

        Safe to call at any time, including from inside a callback: a publish in progress
        keeps delivering to the subscribers it had matched.
        """
        tokens = _split_pattern(pattern)
        if callback is not None and batch_callback is not None:
            raise ValueError("give callback or batch_callback, not both")
        cap = self.default_capacity if capacity is None else capacity
        if cap <= 0:
            raise ValueError(f"capacity must be positive, got {cap}")
        pol = self.default_policy if policy is None else Policy(policy)
        if max_errors is not None and max_errors <= 0:
            raise ValueError(f"max_errors must be positive, got {max_errors}")
        if (not admin and tokens[0] in self.private_prefixes
                and (len(tokens) == 1 or any(t in ("*", ">") for t in tokens[1:]))):
            raise PermissionError(
                f"pattern {pattern!r} spans private topics of many accounts; "
                f"subscribe to one exact topic or pass admin=True"
            )
        sub = Subscription(
            self, pattern, tokens, name=name or f"sub-{next(self._names)}", capacity=cap,
            policy=pol, filter=filter, key=key, callback=callback,
            batch_callback=batch_callback, max_errors=max_errors, admin=admin,
        )
        self._subs.append(sub)
        self._cache.clear()
        self._prefix_cache.clear()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove ``sub`` (idempotent). Its queued messages stay readable. O(subscribers)."""
        self._remove(sub, "unsubscribed")

    def _on_disconnect(self, sub: Subscription, reason: str) -> None:
        self._remove(sub, reason)

    def _remove(self, sub: Subscription, reason: str) -> None:
        if sub._closed:
            return
        sub._end(reason)
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        self._cache.clear()
        self._prefix_cache.clear()
        self._gone_dropped += sub._dropped
        self._gone_conflated += sub._conflated
        self._gone_errors += sub._errors
        self._gone_disconnects += sub._disconnects

    def _match(self, topic: str) -> tuple[Subscription, ...]:
        tokens = _check_topic(topic)
        private = tokens[0] in self.private_prefixes
        matched = tuple(
            sub for sub in self._subs
            if _tokens_match(sub._tokens, tokens)
            and (not private or sub.admin or sub._tokens[0] == tokens[0])
        )
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[topic] = matched
        return matched

    def has_subscribers(self, topic: str) -> bool:
        """Whether a publish to ``topic`` would reach anyone. O(1) when cached."""
        subs = self._cache.get(topic)
        if subs is None:
            subs = self._match(topic)
        return bool(subs)

    def has_subscribers_under(self, first_token: str) -> bool:
        """Whether any subscription could match some topic whose first token is
        ``first_token`` (e.g. ``"exec"``): lets a publisher skip a whole family of topics
        (every account's reports) with one check. O(1) when cached, else O(subscribers)."""
        cached = self._prefix_cache.get(first_token)
        if cached is None:
            private = first_token in self.private_prefixes
            cached = any(
                sub._tokens[0] == first_token
                or (sub._tokens[0] in ("*", ">") and (not private or sub.admin))
                for sub in self._subs
            )
            self._prefix_cache[first_token] = cached
        return cached

    # -- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, msg: Any) -> int:
        """Publish one message; returns the number of subscribers it was enqueued to.
        Synchronous and non-blocking: O(matching subscribers)."""
        return self.publish_many(topic, (msg,))

    def publish_many(self, topic: str, msgs: Sequence[Any]) -> int:
        """Publish a batch to one topic; returns the deliveries (messages x subscribers,
        after filters). The bus keeps ``msgs`` (shared by the subscribers' queues): do not
        mutate it afterwards. O(matching subscribers) for unfiltered drop-oldest/disconnect
        subscribers, plus O(len(msgs)) for each filtered or conflating one."""
        subs = self._cache.get(topic)
        if subs is None:
            subs = self._match(topic)
        self._publish_calls += 1
        n = len(msgs)
        self._published += n
        if not subs:
            self._unrouted += n
            return 0
        delivered = 0
        for sub in subs:
            if not sub._closed:
                delivered += sub._offer(topic, msgs)
        self._deliveries += delivered
        return delivered

    # -- running callback subscribers -----------------------------------------------------

    def _request_pump(self) -> None:
        """Schedule one :meth:`pump` on the running loop (if any; else pump() by hand)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._pump_pending = True
        loop.call_soon(self._pump_from_loop)

    def _pump_from_loop(self) -> None:
        self._pump_pending = False
        self.pump()

    def pump(self) -> int:
        """Run the callback subscribers that have messages: each handles up to
        ``pump_batch`` messages, then yields its turn (and is rescheduled if more remain).
        Called automatically (once per publish cycle) when a loop is running; call it by
        hand when using the bus without one. Returns the messages handled."""
        self._pump_runs += 1
        ready = self._ready
        self._ready = []
        handled = 0
        limit = self.pump_batch
        for sub in ready:
            sub._scheduled = False
            if not sub._size:
                continue
            handled += self._run_callback(sub, limit)
            if sub._size and not sub._closed and not sub._scheduled:
                sub._scheduled = True
                self._ready.append(sub)
        if self._ready and not self._pump_pending:
            self._request_pump()
        return handled

    @staticmethod
    def _run_callback(sub: Subscription, limit: int) -> int:
        handled = 0
        batch_callback = sub._batch_callback
        if batch_callback is not None:
            for topic, msgs in sub.get_chunks_nowait():
                handled += len(msgs)
                try:
                    batch_callback(topic, msgs)
                except Exception as exc:
                    sub._fail(exc)
            return handled
        callback = sub._callback
        assert callback is not None
        while sub._size and handled < limit and not sub._closed:
            msg = sub.get_nowait()
            handled += 1
            try:
                callback(msg)
            except Exception as exc:  # isolate: count, maybe close, carry on
                sub._fail(exc)
        return handled

    # -- introspection --------------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        """A frozen snapshot of the bus and every live subscription. O(subscribers)."""
        subs = tuple(sub.statistics() for sub in self._subs)
        return BusStatistics(
            subscriptions=len(subs), topics_cached=len(self._cache),
            publish_calls=self._publish_calls, published=self._published,
            unrouted=self._unrouted, deliveries=self._deliveries,
            dropped=self._gone_dropped + sum(s.dropped for s in subs),
            conflated=self._gone_conflated + sum(s.conflated for s in subs),
            errors=self._gone_errors + sum(s.errors for s in subs),
            disconnects=self._gone_disconnects + sum(s.disconnects for s in subs),
            pump_runs=self._pump_runs, subscribers=subs,
        )
