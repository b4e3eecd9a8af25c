"""``gateway.jsonfmt``: a bar's VWAP at the WebSocket edge is ``notional / volume`` rounded
half-even to the instrument's price decimals, exactly (no float), checked against Decimal."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from hypothesis import given
from hypothesis import strategies as st

from tickline.gateway.jsonfmt import Format, bar_json
from tickline.matching import Instrument
from tickline.stream import Bar


def decimal_vwap(notional: int, volume: int, decimals: int) -> str:
    with localcontext() as ctx:
        ctx.prec = 200
        units = (Decimal(notional) / Decimal(volume)).quantize(Decimal(1), ROUND_HALF_EVEN)
        return str((units.scaleb(-decimals)).quantize(Decimal(1).scaleb(-decimals)))


@given(notional=st.integers(0, 1 << 80), volume=st.integers(1, 1 << 40),
       decimals=st.integers(0, 8))
def test_vwap_is_the_half_even_rounded_exact_ratio(
    notional: int, volume: int, decimals: int
) -> None:
    fmt = Format(Instrument(symbol="AAA", price_decimals=decimals))
    assert fmt.vwap(notional, volume) == decimal_vwap(notional, volume, decimals)


def test_vwap_ties_go_to_even_and_empty_bars_have_none() -> None:
    fmt = Format(Instrument(symbol="AAA", price_decimals=2))
    assert fmt.vwap(5, 2) == "0.02"  # 2.5 units -> 2
    assert fmt.vwap(7, 2) == "0.04"  # 3.5 units -> 4
    assert fmt.vwap(10_125 * 3 + 1, 3) == "101.25"  # 10125.33 -> 10125
    assert fmt.vwap(10_125 * 3 + 2, 3) == "101.26"  # 10125.67 -> 10126
    assert fmt.vwap(1, 0) == ""
    whole = Format(Instrument(symbol="BBB", price_decimals=0))
    assert whole.vwap(9, 2) == "4" and whole.vwap(11, 2) == "6"


def test_bar_json_formats_prices_and_vwap_as_decimal_strings() -> None:
    fmt = Format(Instrument(symbol="AAA", price_decimals=2, qty_decimals=1))
    price = (1 << 53) + 1  # a float would lose the last unit here
    bar = Bar(seq=1, symbol="AAA", window="1s", start=0, end=1_000_000_000, open=price,
              high=price + 2, low=price, close=price + 2, volume=4,
              notional=price * 2 + (price + 2) * 2, trades=2)
    out = bar_json(fmt, bar)
    assert out["vwap"] == fmt.price(price + 1) == str(Decimal(price + 1).scaleb(-2))
    assert out["volume"] == "0.4" and out["open"] == fmt.price(price)
    assert not any(type(v) is float for v in out.values())
