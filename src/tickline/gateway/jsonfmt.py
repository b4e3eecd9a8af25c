"""JSON formatting at the HTTP/WebSocket edge: integer ticks and lots become decimal strings
(with each instrument's ``price_to_str``/``qty_to_str``, memoized), sides ``"buy"``/``"sell"``,
and one function per outbound message kind. No float is ever produced: a bar's VWAP is
``notional / volume`` rounded half-even to the instrument's price units, in integers.

:func:`exec_json` is the one formatter of execution reports for the WebSocket.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec

from tickline.matching import BUY, SELL, Instrument, reject_reason_name
from tickline.matching.types import CancelReason
from tickline.stream import Bar, Bbo, ExecKind, ExecReport, TradeTick

__all__ = ["Format", "bar_json", "bbo_json", "encoder", "exec_json", "side_name", "trade_json"]

encoder = msgspec.json.Encoder()

_SIDE_NAME = {BUY: "buy", SELL: "sell"}
_EXEC_KIND = {int(k): k.name.lower() for k in ExecKind}
_CANCEL_REASON = {int(r): r.name for r in CancelReason}


class Format:
    """Decimal-string conversion for one instrument (memoized: prices repeat)."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst
        self.price = functools.lru_cache(maxsize=8192)(inst.price_to_str)
        self.qty = functools.lru_cache(maxsize=8192)(inst.qty_to_str)

    def vwap(self, notional: int, volume: int) -> str:
        """A bar's VWAP as a decimal string with the instrument's ``price_decimals``: the
        exact ratio ``notional / volume`` (price units; :attr:`tickline.stream.Bar.vwap`)
        rounded to the nearest price unit, ties to even (banker's rounding, so rounding
        does not drift up over many bars), computed in integers -- no float at the edge.
        ``""`` for ``volume <= 0`` (a bar without trades has no VWAP)."""
        if volume <= 0:
            return ""
        units, rest = divmod(notional, volume)  # floor division: 0 <= rest < volume
        twice = 2 * rest
        if twice > volume or (twice == volume and units % 2):
            units += 1
        return self.inst.price_to_str(units)

    def levels(self, levels: Sequence[tuple[int, int, int]]) -> list[tuple[str, str, int]]:
        """``[(price, quantity, orders)]`` as decimal strings."""
        price, qty = self.price, self.qty
        return [(price(p), qty(q), c) for p, q, c in levels]


def side_name(side: int) -> str:
    return _SIDE_NAME.get(side, str(side))


def trade_json(fmt: Format, t: TradeTick) -> dict[str, Any]:
    return {"type": "trade", "symbol": t.symbol, "seq": t.seq, "ts": t.ts,
            "trade_id": t.trade_id, "price": fmt.price(t.price), "quantity": fmt.qty(t.quantity),
            "side": side_name(t.aggressor_side)}


def bar_json(fmt: Format, b: Bar) -> dict[str, Any]:
    price = fmt.price
    return {"type": "bar", "symbol": b.symbol, "seq": b.seq, "window": b.window,
            "start": b.start, "end": b.end, "open": price(b.open), "high": price(b.high),
            "low": price(b.low), "close": price(b.close), "volume": fmt.qty(b.volume),
            "trades": b.trades, "vwap": fmt.vwap(b.notional, b.volume)}


def bbo_json(fmt: Format, b: Bbo) -> dict[str, Any]:
    price, qty = fmt.price, fmt.qty
    return {"type": "bbo", "symbol": b.symbol, "seq": b.seq, "ts": b.ts,
            "bid": price(b.bid_price) if b.bid_quantity else None,
            "bid_quantity": qty(b.bid_quantity),
            "ask": price(b.ask_price) if b.ask_quantity else None,
            "ask_quantity": qty(b.ask_quantity)}


def exec_json(fmt: Format | None, r: ExecReport) -> dict[str, Any]:
    """The ``exec`` message of one execution report (``fmt`` ``None``: an unknown symbol,
    integers shown as they are)."""
    price = fmt.price if fmt is not None else str
    qty = fmt.qty if fmt is not None else str
    out: dict[str, Any] = {
        "type": "exec", "kind": _EXEC_KIND.get(r.kind, str(r.kind)), "seq": r.seq,
        "ts": r.ts, "account": r.account, "symbol": r.symbol, "order_id": r.order_id,
        "client_order_id": r.client_order_id, "side": side_name(r.side) if r.side else None,
        "price": price(r.price), "quantity": qty(r.quantity), "leaves": qty(r.leaves),
    }
    if r.kind == ExecKind.FILL:
        out.update(last_price=price(r.last_price), last_quantity=qty(r.last_quantity),
                   trade_id=r.trade_id)
    elif r.kind == ExecKind.TRIGGERED:
        out["stop_price"] = price(r.stop_price)
    if r.kind == ExecKind.REJECTED:
        out.update(reason=reject_reason_name(r.reason), text=r.text)
    elif r.reason:  # why it left the book (cancelled, expired): the CancelReason's name
        out["reason"] = _CANCEL_REASON.get(r.reason, r.reason)
    return out
