"""``next_best_key``: the one next-best-level scan shared by the engine's book sides and the
market-data mirror, checked against a brute-force maximum on random sides."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickline.matching.book import EMPTY, NEXT_BEST_SCAN, next_best_key


@given(prices=st.sets(st.integers(1, 2_000), min_size=1, max_size=60),
       step=st.sampled_from([1, 5]), sign=st.sampled_from([1, -1]),
       as_tuples=st.booleans())
def test_next_best_key_equals_the_best_remaining_key(
    prices: set[int], step: int, sign: int, as_tuples: bool
) -> None:
    prices = {p * step for p in prices}
    best_key = max(p * sign for p in prices)
    levels: dict[int, object] = {p: ((1, 1) if as_tuples else object()) for p in prices}
    del levels[best_key * sign]  # the best level was just dropped
    want = max((p * sign for p in levels), default=EMPTY)
    assert next_best_key(levels, best_key, sign, step) == want


@pytest.mark.parametrize("sign", [1, -1])
def test_a_sparse_side_falls_back_to_the_full_scan(sign: int) -> None:
    dropped = 1_000  # the best key that went; the rest lie beyond the tick-by-tick probe
    keys = [dropped - NEXT_BEST_SCAN - gap for gap in (1, 7, 90)]
    levels = {key * sign: (1, 1) for key in keys}
    assert next_best_key(levels, dropped, sign, 1) == max(keys)
    assert next_best_key({}, dropped, sign, 1) == EMPTY


class _NoScan(dict[int, object]):
    """A side's levels that fail the test if anything iterates over all of them."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("next_best_key scanned every level")


@pytest.mark.parametrize("sign", [1, -1])
def test_a_big_side_with_a_thinned_top_is_probed_not_scanned(sign: int) -> None:
    """10,000 levels, the next best 500 ticks below the dropped one (far beyond
    NEXT_BEST_SCAN, within a quarter of the level count): found without a full scan."""
    dropped = 1_000_000
    keys = [dropped - 500 - i for i in range(10_000)]
    levels = _NoScan({key * sign: (1, 1) for key in keys})
    assert next_best_key(levels, dropped, sign, 1) == dropped - 500
