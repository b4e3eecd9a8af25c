"""Token buckets: one rate-limiting mechanism for every gateway.

A :class:`TokenBucket` holds at most ``burst`` tokens and refills at ``rate`` tokens per
second; an action that finds a whole token takes it, otherwise it is refused. So a client may
act ``burst`` times at once and ``rate`` times per second on average. Time is passed in
(``time.monotonic()`` seconds, read once per socket read by the caller): the bucket reads no
clock, costs two float operations per call and can be driven by tests.

:class:`TokenBuckets` keeps one bucket per key (e.g. a source address) within a bound on the
number of keys (Principle 4, "bounded everything"): past it the least recently used key is
forgotten. A forgotten key starts again with a full bucket, so the bound only ever errs towards
letting a key act; an attacker must use more than ``max_keys`` distinct keys to benefit.

Single writer: both classes are used from one thread (a gateway's event loop).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["TokenBucket", "TokenBuckets"]


class TokenBucket:
    """``burst`` tokens refilling at ``rate`` per second; starts full at time ``now``.

    >>> b = TokenBucket(rate=1.0, burst=2, now=0.0)
    >>> b.take(0.0), b.take(0.0), b.take(0.0), b.retry_after(0.0), b.take(1.0)
    (True, True, False, 1.0, True)
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not burst >= 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.stamp = now

    def _refill(self, now: float) -> float:
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.tokens = tokens
        self.stamp = now
        return tokens

    def take(self, now: float) -> bool:
        """Take one token if a whole one is there (True); else take nothing (False). O(1)."""
        tokens = self._refill(now)
        if tokens < 1.0:
            return False
        self.tokens = tokens - 1.0
        return True

    def retry_after(self, now: float) -> float:
        """Seconds from ``now`` until a whole token is there (0.0 if one is now). O(1)."""
        tokens = self._refill(now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


class TokenBuckets:
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them (least recently used
    forgotten first). Every method is O(1)."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        TokenBucket(rate, burst, 0.0)  # validate rate and burst once, here
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # least recently used first; an OrderedDict: a plain dict's oldest key costs
        # O(deleted entries) to find after churn, OrderedDict.popitem(last=False) is O(1)
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may act again (0.0: it may now). Remembers nothing new."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.retry_after(now)

    def allowed(self, key: str, now: float) -> bool:
        """Whether ``key`` has a whole token now (takes nothing, remembers nothing new)."""
        return self.retry_after(key, now) == 0.0

    def take(self, key: str, now: float) -> bool:
        """Take one of ``key``'s tokens (see :meth:`TokenBucket.take`); marks ``key`` as the
        most recently used, forgetting the least recently used key past ``max_keys``."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            buckets[key] = bucket
        else:
            buckets.move_to_end(key)
        return bucket.take(now)
