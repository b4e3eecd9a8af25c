"""Market-data message types: what :class:`~tickline.stream.publisher.MarketDataPublisher`
publishes on the bus (topics and sequencing rules: :mod:`tickline.stream.marketdata`).

Every message is a ``gc=False`` ``msgspec`` struct with a string tag, so the tagged union
:data:`MarketDataMessage` round-trips through JSON or MessagePack. Prices and quantities are
integer units (:mod:`tickline.matching.instruments`); decimals are made at the edges
(:mod:`tickline.gateway.jsonfmt`). No float anywhere: a bar's VWAP is the exact
:class:`~fractions.Fraction` ``notional / volume``.
"""

from __future__ import annotations

from enum import IntEnum
from fractions import Fraction

import msgspec

__all__ = [
    "AccountStatusUpdate",
    "Bar",
    "Bbo",
    "DepthDelta",
    "DepthSnapshot",
    "L3Reason",
    "L3Snapshot",
    "Level3",
    "MarketDataMessage",
    "OrderAdded",
    "OrderDeleted",
    "OrderExecuted",
    "OrderModified",
    "StatusUpdate",
    "TradeTick",
]

Level3 = tuple[int, int, int]
"""``(price, total quantity, order count)``: one depth level, as ``OrderBook.depth`` gives."""


# --- messages ---------------------------------------------------------------------------------


class TradeTick(msgspec.Struct, tag="trade", gc=False):
    """A public execution (no accounts): ``aggressor_side`` is the taker's side."""

    seq: int
    ts: int
    symbol: str
    trade_id: int
    price: int
    quantity: int
    aggressor_side: int


class Bbo(msgspec.Struct, tag="bbo", gc=False):
    """Best bid and offer after a command that changed either (0/0 = that side is empty)."""

    seq: int
    ts: int
    symbol: str
    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int

    def conflation_key(self) -> None:
        """One slot per topic: only the latest BBO matters."""
        return None


class DepthDelta(msgspec.Struct, tag="depth", gc=False):
    """A price level's new state: total open quantity and order count (both 0 = gone).
    Absolute, not incremental, so conflating by level keeps a book correct."""

    seq: int
    ts: int
    symbol: str
    side: int
    price: int
    quantity: int
    order_count: int

    def conflation_key(self) -> tuple[int, int]:
        """Conflate per price level."""
        return (self.side, self.price)


class DepthSnapshot(msgspec.Struct, tag="depth_snapshot"):
    """Every level of a book, best first, consistent with ``depth.SYM`` message ``seq``
    (the next delta is ``seq + 1``). ``ts`` is the engine time of the last command seen."""

    seq: int
    ts: int
    symbol: str
    bids: list[Level3]
    asks: list[Level3]


class L3Reason(IntEnum):
    """Why a resting order left the book in the L3 feed (fills use :class:`OrderExecuted`)."""

    CANCELLED = 1
    EXPIRED = 2
    REPLACED = 3  # moved: it reappears (new price / back of queue) with OrderAdded


class OrderAdded(msgspec.Struct, tag="l3_add", gc=False):
    """An order now rests at the back of its level with ``quantity`` open."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderModified(msgspec.Struct, tag="l3_modify", gc=False):
    """A resting order's open quantity went down in place (it kept its priority)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderExecuted(msgspec.Struct, tag="l3_exec", gc=False):
    """A resting order traded ``quantity``; ``leaves`` remain (0 = it left the book)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    quantity: int
    leaves: int
    trade_id: int

    def conflation_key(self) -> int:
        return self.order_id


class OrderDeleted(msgspec.Struct, tag="l3_delete", gc=False):
    """A resting order left the book without trading (``reason``: :class:`L3Reason`)."""

    seq: int
    ts: int
    symbol: str
    order_id: int
    side: int
    price: int
    reason: int

    def conflation_key(self) -> int:
        return self.order_id


class L3Snapshot(msgspec.Struct, tag="l3_snapshot"):
    """Every resting order as ``(order_id, side, price, open quantity)``: bids best first,
    then asks best first, in time priority within a level; consistent with ``l3.SYM``
    message ``seq``."""

    seq: int
    ts: int
    symbol: str
    orders: list[tuple[int, int, int, int]]


class Bar(msgspec.Struct, tag="bar", gc=False):
    """OHLCV over the engine-time window ``[start, end)`` (only windows with trades are
    published, so ``volume > 0``); ``notional`` is the exact ``sum(price * quantity)``.

    The VWAP is not a field: it is :attr:`vwap`, the exact ratio ``notional / volume``,
    derived from the two integers the wire carries (a consumer divides at its edge, as
    :meth:`tickline.gateway.jsonfmt.Format.vwap` does, rounding half-even)."""

    seq: int
    symbol: str
    window: str
    start: int
    end: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    notional: int
    trades: int

    @property
    def vwap(self) -> Fraction:
        """The volume-weighted average price in price units, exactly: ``notional / volume``
        in lowest terms. Raises :class:`ZeroDivisionError` for a bar with no volume (the
        publisher never emits one)."""
        return Fraction(self.notional, self.volume)


class StatusUpdate(msgspec.Struct, tag="status", gc=False):
    """A symbol was halted (``halted``) or resumed."""

    seq: int
    ts: int
    symbol: str
    halted: bool


class AccountStatusUpdate(msgspec.Struct, tag="account_status", gc=False):
    """An account's kill switch was set (``enabled`` False: its orders were cancelled --
    ``cancelled`` of them, over all symbols -- and new ones are refused) or lifted. Sent on
    every symbol's ``status.SYM`` topic (the switch applies to all), numbered in that topic's
    sequence like :class:`StatusUpdate`, so a venue watcher sees every admin action."""

    seq: int
    ts: int
    symbol: str
    account: int
    enabled: bool
    cancelled: int


MarketDataMessage = (TradeTick | Bbo | DepthDelta | DepthSnapshot | OrderAdded | OrderModified
                     | OrderExecuted | OrderDeleted | L3Snapshot | Bar | StatusUpdate
                     | AccountStatusUpdate)
"""Every message the publisher emits (a tagged union: ``msgspec.json.decode(data,
type=MarketDataMessage)`` round-trips)."""
