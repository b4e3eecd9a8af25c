"""Validation of order fields against an instrument: each check returns a
:class:`~tickline.matching.types.RejectReason` code (0: valid) and, apart from it, the text
that names the field and shows the value. Pure functions with no state, shared by the engine
(:mod:`tickline.matching.engine`) and the stop and iceberg paths
(:mod:`tickline.matching.stops`, :mod:`tickline.matching.iceberg`).

Codes are plain ``int`` aliases of the enum (an ``IntEnum`` member costs more on hot paths).
"""

from __future__ import annotations

from typing import Final

from tickline.matching.instruments import Instrument
from tickline.matching.types import FOK, IOC, MARKET, STOP, STOP_LIMIT, RejectReason

R_UNKNOWN_SYMBOL: Final = int(RejectReason.UNKNOWN_SYMBOL)
R_HALTED: Final = int(RejectReason.INSTRUMENT_HALTED)
R_SIDE: Final = int(RejectReason.INVALID_SIDE)
R_TYPE: Final = int(RejectReason.INVALID_ORDER_TYPE)
R_STP: Final = int(RejectReason.INVALID_STP_MODE)
R_TIF: Final = int(RejectReason.INVALID_TIME_IN_FORCE)
R_QTY: Final = int(RejectReason.NON_POSITIVE_QUANTITY)
R_LOT: Final = int(RejectReason.OFF_LOT_QUANTITY)
R_QTY_MAX: Final = int(RejectReason.QUANTITY_TOO_LARGE)
R_PRICE: Final = int(RejectReason.NON_POSITIVE_PRICE)
R_TICK: Final = int(RejectReason.OFF_TICK_PRICE)
R_BAND: Final = int(RejectReason.PRICE_OUT_OF_BAND)
R_EXPIRE: Final = int(RejectReason.EXPIRE_TIME_IN_PAST)
R_POST_ONLY: Final = int(RejectReason.POST_ONLY_WOULD_TAKE)
R_MARKET: Final = int(RejectReason.MARKET_ORDER_NOT_ALLOWED)
R_REPLACE_QTY: Final = int(RejectReason.REPLACE_QUANTITY_TOO_LOW)
R_UNKNOWN_ORDER: Final = int(RejectReason.UNKNOWN_ORDER)
R_DUP_CLID: Final = int(RejectReason.DUPLICATE_CLIENT_ORDER_ID)
R_STOP_PRICE: Final = int(RejectReason.NON_POSITIVE_STOP_PRICE)
R_STOP_TICK: Final = int(RejectReason.OFF_TICK_STOP_PRICE)
R_STOP_BAND: Final = int(RejectReason.STOP_PRICE_OUT_OF_BAND)
R_STOP_NOT_ALLOWED: Final = int(RejectReason.STOP_PRICE_NOT_ALLOWED)
R_STOP_INVALID: Final = int(RejectReason.INVALID_STOP_ORDER)
R_DISPLAY_NEGATIVE: Final = int(RejectReason.NEGATIVE_DISPLAY_QUANTITY)
R_DISPLAY_LOT: Final = int(RejectReason.OFF_LOT_DISPLAY_QUANTITY)
R_DISPLAY_LARGE: Final = int(RejectReason.DISPLAY_QUANTITY_TOO_LARGE)
R_DISPLAY_NOT_ALLOWED: Final = int(RejectReason.DISPLAY_QUANTITY_NOT_ALLOWED)

_STOP_CODES: Final = {R_PRICE: R_STOP_PRICE, R_TICK: R_STOP_TICK, R_BAND: R_STOP_BAND}


def check_quantity(instrument: Instrument, quantity: int) -> int:
    """Positive, on lot, within the instrument's maximum."""
    if quantity <= 0:
        return R_QTY
    if quantity % instrument.lot_size:
        return R_LOT
    if instrument.max_quantity and quantity > instrument.max_quantity:
        return R_QTY_MAX
    return 0


def quantity_text(instrument: Instrument, quantity: int) -> str:
    """The reject text for a quantity :func:`check_quantity` refused."""
    if quantity <= 0:
        return f"quantity must be positive, got {quantity}"
    if quantity % instrument.lot_size:
        return f"quantity {quantity} is not a multiple of the lot size {instrument.lot_size}"
    return f"quantity {quantity} exceeds the maximum {instrument.max_quantity}"


def check_price(instrument: Instrument, price: int) -> int:
    """Positive, on tick, within the instrument's price band."""
    if price <= 0:
        return R_PRICE
    if price % instrument.tick_size:
        return R_TICK
    if price < instrument.min_price or (instrument.max_price and price > instrument.max_price):
        return R_BAND
    return 0


def price_text(instrument: Instrument, price: int, what: str = "price") -> str:
    """The reject text for a price :func:`check_price` refused; ``what`` names the field."""
    if price <= 0:
        return f"{'limit price' if what == 'price' else what} must be positive, got {price}"
    if price % instrument.tick_size:
        return f"{what} {price} is not a multiple of the tick size {instrument.tick_size}"
    return (f"{what} {price} is outside the band "
            f"[{instrument.min_price}, {instrument.max_price or 'inf'}]")


def check_stop_price(instrument: Instrument, stop_price: int) -> tuple[int, str]:
    """A stop price follows the limit-price rules, with its own codes (230-232)."""
    reason = check_price(instrument, stop_price)
    if not reason:
        return 0, ""
    return _STOP_CODES[reason], price_text(instrument, stop_price, "stop price")


def check_display(instrument: Instrument, display: int, quantity: int) -> tuple[int, str]:
    """A display quantity: not negative, on lot, at most the order's total ``quantity``."""
    if display < 0:
        return R_DISPLAY_NEGATIVE, f"display quantity must not be negative, got {display}"
    if display % instrument.lot_size:
        return R_DISPLAY_LOT, (f"display quantity {display} is not a multiple of the lot size "
                               f"{instrument.lot_size}")
    if display > quantity:
        return R_DISPLAY_LARGE, f"display quantity {display} exceeds the quantity {quantity}"
    return 0, ""


def check_new_order_extras(
    instrument: Instrument, order_type: int, tif: int, stop_price: int, display: int,
    quantity: int, post_only: bool,
) -> tuple[int, str]:
    """The stop and iceberg fields of a new order whose type, quantity and limit price are
    already valid. Order of checks: stop price (for a stop: valid; otherwise absent),
    post-only stop, then display quantity (not negative, allowed, on lot, within quantity).
    Called only when a stop or display field is set, so plain orders never pay for it."""
    is_stop = order_type == STOP or order_type == STOP_LIMIT
    if is_stop:
        reason, text = check_stop_price(instrument, stop_price)
        if reason:
            return reason, text
        if post_only:
            return R_STOP_INVALID, "a stop order cannot be post-only"
    elif stop_price:
        return R_STOP_NOT_ALLOWED, (f"stop price {stop_price} given on an order that is not a "
                                    "stop (order type 3 or 4)")
    if display:
        if display < 0:
            return check_display(instrument, display, quantity)
        if order_type == MARKET or is_stop or tif == IOC or tif == FOK:
            return R_DISPLAY_NOT_ALLOWED, ("a display quantity needs a resting limit order "
                                           "(not market, stop, IOC or FOK)")
        return check_display(instrument, display, quantity)
    return 0, ""


__all__ = [
    "check_display", "check_new_order_extras", "check_price", "check_quantity",
    "check_stop_price", "price_text", "quantity_text",
]
