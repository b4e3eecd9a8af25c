"""Instrument validation and the exact decimal conversions used at the edges."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.matching.helpers import BOUNDED
from tickline.matching import Instrument, InstrumentError

INST = Instrument(symbol="ABC", price_decimals=2, qty_decimals=3)


@pytest.mark.parametrize(
    ("text", "units"),
    [("101.25", 10125), ("101.2", 10120), ("101", 10100), ("0.01", 1), ("1.230", 123),
     ("1e2", 10000), ("-1.5", -150), ("0", 0), (Decimal("3.14"), 314),
     ("92233720368547758.07", 2**63 - 1)],
)
def test_price_from_str_is_exact(text: str, units: int) -> None:
    assert INST.price_from_str(text) == units


def test_price_to_str_formats_with_all_decimals() -> None:
    assert INST.price_to_str(10125) == "101.25"
    assert INST.price_to_str(10100) == "101.00"
    assert INST.price_to_str(1) == "0.01"
    assert INST.price_to_str(-150) == "-1.50"
    assert INST.price_to_str(0) == "0.00"
    assert Instrument(symbol="X", price_decimals=0).price_to_str(7) == "7"
    assert INST.qty_to_str(1500) == "1.500"


def test_price_to_str_is_exact_for_every_int64() -> None:
    assert INST.price_to_str(2**63 - 1) == "92233720368547758.07"
    assert INST.price_to_str(-(2**63)) == "-92233720368547758.08"


@pytest.mark.parametrize(
    ("text", "match"),
    [("0.001", r"price '0\.001' has more than 2 decimal places"),
     ("101.255", r"price '101\.255' has more than 2 decimal places"),
     ("abc", r"price must be a decimal number, got 'abc'"),
     ("", r"price must be a decimal number, got ''"),
     ("NaN", r"price must be finite, got 'NaN'"),
     ("Infinity", r"price must be finite, got 'Infinity'"),
     ("-inf", r"price must be finite, got '-inf'")],
)
def test_price_from_str_errors_name_the_value(text: str, match: str) -> None:
    with pytest.raises(InstrumentError, match=match):
        INST.price_from_str(text)


def test_qty_from_str_names_quantity() -> None:
    assert INST.qty_from_str("1.5") == 1500
    with pytest.raises(InstrumentError, match=r"quantity '1\.0005' has more than 3 decimal"):
        INST.qty_from_str("1.0005")


def test_price_from_str_never_rounds_long_inputs() -> None:
    # 31 significant digits: more than the default decimal context keeps (28). The value is
    # not representable in the integer wire format; it must be refused, never rounded.
    text = "12345678901234567890123456789.01"
    with pytest.raises(InstrumentError, match=r"12345678901234567890123456789\.01"):
        INST.price_from_str(text)
    # and a long but in-range value converts exactly
    assert INST.price_from_str("0.0100000000000000000000000000000") == 1


def test_price_from_str_refuses_tiny_nonzero_values() -> None:
    # underflow must not turn a non-zero value into 0
    with pytest.raises(InstrumentError, match="1e-999999999"):
        INST.price_from_str("1e-999999999")


@pytest.mark.parametrize("text", ["1e999990", "1e9999999", "92233720368547758.08", "-1e30"])
def test_price_from_str_refuses_out_of_range_values_quickly(text: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(InstrumentError, match=text.replace(".", r"\.")):
        INST.price_from_str(text)
    assert time.perf_counter() - t0 < 0.5, "a huge exponent must not be expanded"


@BOUNDED
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.integers(0, 8))
def test_price_round_trip(units: int, decimals: int) -> None:
    inst = Instrument(symbol="X", price_decimals=decimals, qty_decimals=decimals)
    assert inst.price_from_str(inst.price_to_str(units)) == units
    assert inst.qty_from_str(inst.qty_to_str(units)) == units


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"symbol": ""}, r"symbol must be 1\.\.32 characters, got ''"),
     ({"symbol": "X" * 33}, r"symbol must be 1\.\.32 characters"),
     ({"symbol": "X", "tick_size": 0}, r"tick_size must be positive, got 0"),
     ({"symbol": "X", "lot_size": -5}, r"lot_size must be positive, got -5"),
     ({"symbol": "X", "min_price": -1}, r"min_price must be >= 0, got -1"),
     ({"symbol": "X", "protection_ticks": -3}, r"protection_ticks must be >= 0, got -3"),
     ({"symbol": "X", "min_price": 200, "max_price": 100},
      r"min_price 200 is above max_price 100")],
)
def test_instrument_rejects_bad_definitions(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InstrumentError, match=match):
        Instrument(**kwargs)  # type: ignore[arg-type]
