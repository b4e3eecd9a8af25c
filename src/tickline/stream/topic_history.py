"""Topic history: the most recent messages of each sequenced market-data topic, for gap
recovery.

A subscriber that sees a hole in a topic's sequence (its own buffer dropped messages, or it
was away) asks for the missed range; :class:`TopicHistory` serves it from memory when it
still holds the whole range, else the caller falls back to a fresh snapshot. It is fed by
ordinary bus subscriptions (:meth:`TopicHistory.attach`), so it costs the exchange nothing
beyond what any subscriber costs.

Invariant: each topic's deque is *contiguous* in ``seq`` (``seq`` of one message = the
previous one's + 1). Should the history's own subscription ever lose messages, the deque is
restarted at the first message after the hole, so a range is served exactly or not at all.
Single writer: the bus's loop. Memory: at most ``per_topic`` messages per topic seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from tickline.stream.bus import Bus
from tickline.stream.subscription import Subscription

__all__ = ["TopicHistory"]


class TopicHistory:
    """The last ``per_topic`` messages of every topic it is fed, contiguous by ``seq``
    (messages are any objects with an integer ``seq``)."""

    def __init__(self, per_topic: int = 1000) -> None:
        if per_topic < 0:
            raise ValueError(f"per_topic must be >= 0, got {per_topic}")
        self.per_topic = per_topic
        self._topics: dict[str, deque[Any]] = {}
        self._last: dict[str, int] = {}
        self.restarts = 0
        """How often a hole in the feed restarted a topic's history."""
        self.subscriptions: list[Subscription] = []

    def attach(self, bus: Bus, patterns: Iterable[str], capacity: int = 65536) -> None:
        """Follow every topic matching ``patterns`` on ``bus``."""
        for pattern in patterns:
            self.subscriptions.append(bus.subscribe(
                pattern, batch_callback=self.record, capacity=capacity, policy="drop_oldest",
                name=f"topic-history-{pattern}"))

    def close(self) -> None:
        for sub in self.subscriptions:
            sub.close()
        self.subscriptions.clear()

    def record(self, topic: str, msgs: Sequence[Any]) -> None:
        """Keep ``msgs`` (one published batch of ``topic``, in ``seq`` order). O(len(msgs))."""
        if not msgs:
            return
        last = self._last.get(topic, 0)
        self._last[topic] = max(last, msgs[-1].seq)
        if not self.per_topic:
            return
        q = self._topics.get(topic)
        if q is None:
            q = self._topics[topic] = deque(maxlen=self.per_topic)
        for m in msgs:
            seq = m.seq
            if q and seq != q[-1].seq + 1:
                if seq <= q[-1].seq:
                    continue  # already held
                q.clear()  # a hole: keep the deque contiguous
                self.restarts += 1
            q.append(m)

    def last_seq(self, topic: str) -> int:
        """The newest ``seq`` seen on ``topic`` (0: none yet; topics number from 1)."""
        return self._last.get(topic, 0)

    def range(self, topic: str, from_seq: int, to_seq: int) -> list[Any] | None:
        """The messages ``from_seq..to_seq`` (inclusive) if all are held, else None.
        ``to_seq < from_seq`` is the empty range. O(returned + 1)."""
        if to_seq < from_seq:
            return []
        q = self._topics.get(topic)
        if not q or q[0].seq > from_seq or q[-1].seq < to_seq:
            return None
        start = from_seq - q[0].seq
        return list(islice(q, start, start + (to_seq - from_seq + 1)))

    def recent(self, topic: str, n: int | None = None) -> list[Any]:
        """The newest ``n`` held messages of ``topic`` (all held when ``n`` is None)."""
        q = self._topics.get(topic)
        if not q:
            return []
        if n is None or n >= len(q):
            return list(q)
        return list(islice(q, len(q) - n, None))
