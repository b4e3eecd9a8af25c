"""Token buckets: one per session for request rates, one per source address for failed logins.

A :class:`TokenBucket` holds up to ``burst`` tokens and refills at ``rate`` tokens per second;
an action takes one token or is refused. The clock is passed in (``now``, seconds from
:func:`time.monotonic`), so the arithmetic is deterministic and testable without sleeping.

:class:`AddressThrottle` keeps one bucket per key (a source address) for an action that
should be rare -- a wrong-key login -- in a bounded table: a key whose bucket has refilled
completely carries no information and is forgotten first; when the table is still full the
oldest key is dropped (counted in :attr:`AddressThrottle.evicted`), which at worst gives that
address a fresh burst.
"""

from __future__ import annotations

__all__ = ["AddressThrottle", "TokenBucket"]


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second. Single writer (the event loop)."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def _refill(self, now: float) -> float:
        tokens = self.tokens + (now - self.updated) * self.rate
        self.tokens = tokens = tokens if tokens < self.burst else self.burst
        self.updated = now
        return tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one; ``False`` (nothing taken) when empty. O(1)."""
        if self._refill(now) < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def available(self, now: float) -> bool:
        """Whether :meth:`take` would succeed now (takes nothing). O(1)."""
        return self._refill(now) >= 1.0

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (its history no longer matters)."""
        return self._refill(now) >= self.burst

    def retry_after(self, now: float) -> float:
        """Seconds until one token is available (0 when one is). O(1)."""
        missing = 1.0 - self._refill(now)
        return missing / self.rate if missing > 0 else 0.0


class AddressThrottle:
    """One :class:`TokenBucket` per key, at most ``max_keys`` of them. O(1) per call except a
    prune pass (O(keys)) when the table is full."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}
        self.evicted = 0

    def allowed(self, key: str, now: float) -> bool:
        """Whether ``key`` may try now (it has a token left). Takes nothing."""
        bucket = self._buckets.get(key)
        return bucket is None or bucket.available(now)

    def retry_after(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        return bucket.retry_after(now) if bucket is not None else 0.0

    def failed(self, key: str, now: float) -> None:
        """Record one failure of ``key`` (takes a token if one is left)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        bucket.take(now)

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._buckets)
