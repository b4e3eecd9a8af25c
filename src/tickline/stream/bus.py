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

Layout: topic/pattern validation and wildcard matching live in :mod:`tickline.stream.topics`,
the subscription (queue, policies, counters, consumer API) in
:mod:`tickline.stream.subscription`; this module holds the :class:`Bus` (routing, match
cache, pump) and re-exports the public names of both, so ``tickline.stream.bus`` imports
keep working.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# Aliases that were importable from this module before the split (``X as X``: an explicit
# re-export for strict mypy, without widening ``__all__``).
from tickline.stream.subscription import BatchCallback as BatchCallback
from tickline.stream.subscription import Callback as Callback
from tickline.stream.subscription import (
    Chunk,
    Policy,
    SubscriberDisconnected,
    Subscription,
    SubscriptionClosed,
    SubscriptionStatistics,
    default_conflation_key,
)
from tickline.stream.subscription import Filter as Filter
from tickline.stream.subscription import KeyFunction as KeyFunction
from tickline.stream.topics import _check_topic, _split_pattern, _tokens_match, topic_matches

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

_CACHE_LIMIT = 65_536  # distinct topics remembered before the match cache starts over


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
