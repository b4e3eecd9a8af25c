"""Token buckets: burst then rate, refusals take nothing, per-key buckets within a bound."""

from __future__ import annotations

import pytest

from tickline.core.ratelimit import TokenBucket, TokenBuckets


def test_bucket_allows_the_burst_then_the_rate() -> None:
    b = TokenBucket(rate=2.0, burst=3, now=10.0)
    assert [b.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert b.retry_after(10.0) == pytest.approx(0.5)
    assert not b.take(10.4)  # 0.8 of a token: a refusal takes nothing ...
    assert b.take(10.5)  # ... so the token is whole at 10.5
    assert b.retry_after(10.5) == pytest.approx(0.5)
    assert [b.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


@pytest.mark.parametrize(("rate", "burst", "match"), [
    (0.0, 1, "rate must be > 0, got 0.0"), (1.0, 0.5, "burst must be >= 1, got 0.5")])
def test_bucket_rejects_bad_parameters(rate: float, burst: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenBucket(rate, burst, 0.0)
    with pytest.raises(ValueError, match=match):
        TokenBuckets(rate, burst, 10)
    with pytest.raises(ValueError, match="max_keys must be >= 1, got 0"):
        TokenBuckets(1.0, 1, 0)


def test_keys_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1.0, burst=2, max_keys=100)
    assert buckets.retry_after("10.0.0.1", 0.0) == 0.0  # unknown key: may act, not stored
    assert len(buckets) == 0
    assert [buckets.take("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.retry_after("10.0.0.1", 0.0) == pytest.approx(1.0)
    assert buckets.retry_after("10.0.0.2", 0.0) == 0.0  # another address is unaffected
    assert buckets.take("10.0.0.2", 0.0)
    assert buckets.retry_after("10.0.0.1", 1.0) == 0.0


def test_the_number_of_keys_is_bounded_least_recently_used_first() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=3)
    for key in ("a", "b", "c"):
        assert buckets.take(key, 0.0)
    assert buckets.retry_after("a", 0.0) > 0
    assert not buckets.take("a", 0.0)  # "a" is now the most recently used
    assert buckets.take("d", 0.0)  # evicts "b"
    assert len(buckets) == 3
    assert buckets.retry_after("b", 0.0) == 0.0  # forgotten: starts full again
    assert buckets.retry_after("a", 0.0) > 0 and buckets.retry_after("c", 0.0) > 0
