"""Instruments: what may be traded and on which grid.

Inside tickline a price is an integer number of *price units* (``10**-price_decimals`` of the
quote currency) and a quantity an integer number of *quantity units*
(``10**-qty_decimals``). The tick size and lot size are integers in those units. Decimal
strings exist only at the edges (gateways, display); :meth:`Instrument.price_from_str` and
friends convert exactly, never through ``float``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import msgspec


class InstrumentError(ValueError):
    """A value at the edge does not fit an instrument's grid; the message names it."""


class Instrument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tradable symbol and its rules.

    ``min_price``/``max_price`` form an optional static price band (limit prices outside it
    are rejected). ``protection_ticks`` (0 = off) bounds how far an incoming order may walk
    the book from the best opposite price it found on arrival; what it cannot fill inside
    that band is cancelled with reason ``PRICE_PROTECTION``.
    """

    symbol: str
    tick_size: int = 1
    lot_size: int = 1
    price_decimals: int = 2
    qty_decimals: int = 0
    min_price: int = 0
    max_price: int = 0
    max_quantity: int = 0
    protection_ticks: int = 0

    def __post_init__(self) -> None:
        if not self.symbol or len(self.symbol) > 32:
            raise InstrumentError(f"symbol must be 1..32 characters, got {self.symbol!r}")
        for name in ("tick_size", "lot_size"):
            value = getattr(self, name)
            if value <= 0:
                raise InstrumentError(f"{name} must be positive, got {value}")
        for name in ("min_price", "max_price", "max_quantity", "protection_ticks",
                     "price_decimals", "qty_decimals"):
            value = getattr(self, name)
            if value < 0:
                raise InstrumentError(f"{name} must be >= 0, got {value}")
        if self.max_price and self.min_price > self.max_price:
            raise InstrumentError(
                f"min_price {self.min_price} is above max_price {self.max_price}"
            )

    # -- edge conversions ---------------------------------------------------------------

    def price_from_str(self, text: str | Decimal) -> int:
        """Convert a decimal price (``"101.25"``) to integer price units, exactly.

        Raises :class:`InstrumentError` if it has more decimals than the instrument allows or
        does not fit a signed 64-bit integer (the journal and wire format).
        """
        return _to_units(text, self.price_decimals, "price")

    def price_to_str(self, units: int) -> str:
        """Format integer price units as a decimal string (``10125`` → ``"101.25"``)."""
        return _from_units(units, self.price_decimals)

    def qty_from_str(self, text: str | Decimal) -> int:
        """Convert a decimal quantity to integer quantity units, exactly."""
        return _to_units(text, self.qty_decimals, "quantity")

    def qty_to_str(self, units: int) -> str:
        """Format integer quantity units as a decimal string."""
        return _from_units(units, self.qty_decimals)


def _to_units(text: str | Decimal, decimals: int, what: str) -> int:
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise InstrumentError(f"{what} must be a decimal number, got {text!r}") from None
    if not value.is_finite():
        raise InstrumentError(f"{what} must be finite, got {text!r}")
    # Exact integer arithmetic on the digits: Decimal.scaleb rounds to the context precision
    # (28 digits), flushes tiny values to 0 and would let "1e999990" expand to a
    # million-digit int, so the exponent is bounded before anything is multiplied out.
    _sign, digits, exponent = value.as_tuple()
    coefficient = int("".join(map(str, digits)))
    shift = int(exponent) + decimals
    if coefficient and shift < 0:
        if -shift > len(digits):
            raise InstrumentError(f"{what} {text!r} has more than {decimals} decimal places")
        coefficient, rest = divmod(coefficient, 10 ** -shift)
        if rest:
            raise InstrumentError(f"{what} {text!r} has more than {decimals} decimal places")
    elif coefficient and shift > 0:
        if len(digits) + shift > _INT64_DIGITS:
            raise InstrumentError(f"{what} {text!r} is out of the 64-bit integer range")
        coefficient *= 10**shift
    units = -coefficient if value.is_signed() else coefficient
    if not _INT64_MIN <= units <= _INT64_MAX:
        raise InstrumentError(f"{what} {text!r} is out of the 64-bit integer range")
    return units


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT64_DIGITS = 19  # len(str(_INT64_MAX))


def _from_units(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    return str(Decimal(units).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))
