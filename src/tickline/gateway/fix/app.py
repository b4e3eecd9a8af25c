"""FIX 4.4 application messages <-> tickline commands and reports (no I/O).

Inbound: NewOrderSingle (D) -> :class:`~tickline.matching.NewOrder`, OrderCancelRequest (F)
-> :class:`~tickline.matching.Cancel`, OrderCancelReplaceRequest (G) ->
:class:`~tickline.matching.Replace`; a request tickline cannot take raises
:class:`OrderRefused` (answered with ExecutionReport 150=8 or OrderCancelReject 35=9).

Mappings (documented in docs/fix.md):

* TimeInForce (59): 0 DAY -> GTC (tickline has no trading sessions, a day order rests until
  cancelled), 1 GTC -> GTC, 3 IOC -> IOC, 4 FOK -> FOK, 6 GTD -> GTD with ExpireTime (126);
  2 OPG, 5 GTX, 7 ATC are refused. Absent: DAY.
* OrdType (40): 1 market, 2 limit, 3 stop (StopPx 99), 4 stop limit (Price + StopPx).
* ExecInst (18) containing 6 (participate, don't initiate) -> post only.
* MaxFloor (111) -> iceberg display quantity.
* Prices and quantities are decimal strings converted exactly to the instrument's integer
  units: more decimals than the instrument has are refused, never rounded (the engine then
  refuses an off-tick price or an off-lot quantity with its own reason).

Outbound: :func:`exec_report` turns an :class:`~tickline.stream.reports.ExecReport` into an
ExecutionReport body (ExecType/OrdStatus per report kind, CumQty/LeavesQty/AvgPx from the
report's cumulative fields, ExecID ``<account>-<report seq>``, unique and the same after a
restart). A report without a number (seq 0: a reject the exchange answered without
sequencing it, STALE_ORDER 410, SHARD_UNAVAILABLE 411) gets ``R<account>-<ns>`` instead,
from :func:`unique_ns` (like the gateway's own refusals), so ExecIDs never repeat.
"""

from __future__ import annotations

import calendar
import time

from tickline.matching import (
    Cancel,
    Instrument,
    NewOrder,
    RejectReason,
    Replace,
)
from tickline.matching.types import (
    FOK,
    GTC,
    GTD,
    IOC,
    LIMIT,
    MARKET,
    STOP,
    STOP_LIMIT,
)
from tickline.matching.types import reject_reason_name as reject_name
from tickline.stream.reports import ExecKind, ExecReport, OrderState, OrderStatus

__all__ = ["OrderRefused", "avg_bytes", "business_reject", "cancel_reject", "exec_report",
           "fmt_units", "parse_units", "refused_report", "reject_name", "status_report",
           "to_cancel", "to_new_order", "to_replace", "units_bytes", "unknown_status_report"]

_NEW = int(ExecKind.NEW)
_REJECTED = int(ExecKind.REJECTED)
_FILL = int(ExecKind.FILL)
_CANCELLED = int(ExecKind.CANCELLED)
_REPLACED = int(ExecKind.REPLACED)
_EXPIRED = int(ExecKind.EXPIRED)
_TRIGGERED = int(ExecKind.TRIGGERED)

TIF = {"0": GTC, "1": GTC, "3": IOC, "4": FOK, "6": GTD}
ORD_TYPE = {"1": MARKET, "2": LIMIT, "3": STOP, "4": STOP_LIMIT}
ORD_TYPE_OUT = {v: k for k, v in ORD_TYPE.items()}
SIDE = {"1": 1, "2": 2}
STATUS = {int(OrderStatus.NEW): "0", int(OrderStatus.PARTIALLY_FILLED): "1",
          int(OrderStatus.FILLED): "2", int(OrderStatus.CANCELLED): "4",
          int(OrderStatus.EXPIRED): "C"}
# RejectReason -> OrdRejReason (103): 1 unknown symbol, 2 exchange closed, 3 order exceeds
# limit, 5 unknown order, 6 duplicate order, 99 other
ORD_REJ = {int(RejectReason.UNKNOWN_SYMBOL): 1, int(RejectReason.INSTRUMENT_HALTED): 2,
           int(RejectReason.QUANTITY_TOO_LARGE): 3, int(RejectReason.RISK_MAX_QUANTITY): 3,
           int(RejectReason.RISK_MAX_NOTIONAL): 3, int(RejectReason.RISK_MAX_OPEN_ORDERS): 3,
           int(RejectReason.RISK_MAX_POSITION): 3, int(RejectReason.UNKNOWN_ORDER): 5,
           int(RejectReason.DUPLICATE_CLIENT_ORDER_ID): 6}


class OrderRefused(Exception):
    """A request refused at the gateway: ``text`` and the tickline ``reason`` code."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


_OTHER = 0  # no tickline reason: a FIX field problem (OrdRejReason 99)


def parse_units(text: str, decimals: int, what: str) -> int:
    """A FIX decimal string as integer units with ``decimals`` places, exactly; refused
    (never rounded) with more significant decimals, a sign, or anything not a number."""
    whole, dot, frac = text.partition(".")
    if not (whole.isdecimal() or (not whole and dot)) or (frac and not frac.isdecimal()) or (
            dot and not frac and not whole):
        raise OrderRefused(_OTHER, f"{what} {text!r} is not a non-negative decimal number")
    if len(frac) > decimals:
        if frac[decimals:].strip("0"):
            raise OrderRefused(_OTHER, f"{what} {text!r} has more than {decimals} decimal "
                                       f"places (not rounded)")
        frac = frac[:decimals]
    units = int((whole or "0") + frac.ljust(decimals, "0"))
    if units >= 1 << 62:
        raise OrderRefused(_OTHER, f"{what} {text!r} is out of range")
    return units


_POW10 = tuple(10**k for k in range(40))


def units_bytes(units: int, decimals: int) -> bytes:
    """Integer units as decimal ASCII with ``decimals`` places (``10125, 2`` -> ``b"101.25"``):
    what every price and quantity field of an outbound message carries."""
    if decimals == 0:
        return b"%d" % units
    if units < 0:
        return b"-" + units_bytes(-units, decimals)
    whole, frac = divmod(units, _POW10[decimals])
    return b"%d.%0*d" % (whole, decimals, frac)


def fmt_units(units: int, decimals: int) -> str:
    """Integer units as a decimal string with ``decimals`` places (``10125, 2`` -> ``101.25``)."""
    return units_bytes(units, decimals).decode()


def avg_bytes(notional: int, quantity: int, inst: Instrument) -> bytes:
    """AvgPx: the exact average ``notional / quantity`` in price units, as a decimal with 6
    more places than the instrument's prices (exact whenever it terminates by then), rounded
    half to even like ``round(Fraction(notional, quantity) * 10**6)``, in integers."""
    if not quantity:
        return b"0"
    if quantity < 0:
        notional, quantity = -notional, -quantity
    d = inst.price_decimals
    whole, rest = divmod(notional, quantity)
    if not rest:
        return units_bytes(whole, d)
    scaled, rest = divmod(notional * 1_000_000, quantity)
    twice = 2 * rest
    if twice > quantity or (twice == quantity and scaled & 1):
        scaled += 1
    return units_bytes(scaled, d + 6).rstrip(b"0")


def fmt_avg(notional: int, quantity: int, inst: Instrument) -> str:
    """:func:`avg_bytes` as text."""
    return avg_bytes(notional, quantity, inst).decode()


def _timestamp_ns(value: str) -> int:
    tm = (int(value[:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
          int(value[12:14]), int(value[15:17]), 0, 0, 0)
    ms = int(value[18:21]) if len(value) >= 21 else 0
    return (calendar.timegm(tm) * 1000 + ms) * 1_000_000


def _instrument(values: dict[int, str], instruments: dict[str, Instrument]) -> Instrument:
    symbol = values.get(55, "")
    if not symbol:
        raise OrderRefused(_OTHER, "Symbol (55) is required")
    inst = instruments.get(symbol)
    if inst is None:
        raise OrderRefused(int(RejectReason.UNKNOWN_SYMBOL), f"unknown symbol {symbol!r}")
    return inst


def _side(values: dict[int, str]) -> int:
    side = SIDE.get(values.get(54, ""))
    if side is None:
        raise OrderRefused(int(RejectReason.INVALID_SIDE),
                           f"Side (54) {values.get(54)!r} not supported (1 buy, 2 sell)")
    return side


def to_new_order(values: dict[int, str], account: int,
                 instruments: dict[str, Instrument]) -> NewOrder:
    """NewOrderSingle (D) fields -> NewOrder. Raises :class:`OrderRefused`."""
    inst = _instrument(values, instruments)
    side = _side(values)
    order_type = ORD_TYPE.get(values.get(40, ""))
    if order_type is None:
        raise OrderRefused(int(RejectReason.INVALID_ORDER_TYPE),
                           f"OrdType (40) {values.get(40)!r} not supported (1, 2, 3, 4)")
    tif_code = values.get(59, "0")
    tif = TIF.get(tif_code)
    if tif is None:
        raise OrderRefused(int(RejectReason.INVALID_TIME_IN_FORCE),
                           f"TimeInForce (59) {tif_code!r} not supported (0, 1, 3, 4, 6)")
    qty = values.get(38)
    if qty is None:
        raise OrderRefused(_OTHER, "OrderQty (38) is required")
    quantity = parse_units(qty, inst.qty_decimals, "OrderQty (38)")
    price = 0
    if order_type == LIMIT or order_type == STOP_LIMIT:
        px = values.get(44)
        if px is None:
            raise OrderRefused(_OTHER, "Price (44) is required for a limit order")
        price = parse_units(px, inst.price_decimals, "Price (44)")
    stop_price = 0
    if order_type == STOP or order_type == STOP_LIMIT:
        spx = values.get(99)
        if spx is None:
            raise OrderRefused(_OTHER, "StopPx (99) is required for a stop order")
        stop_price = parse_units(spx, inst.price_decimals, "StopPx (99)")
    expire = 0
    if tif == GTD:
        et = values.get(126)
        if et is None:
            raise OrderRefused(_OTHER, "ExpireTime (126) is required for GTD")
        expire = _timestamp_ns(et)
    display = 0
    if 111 in values:
        display = parse_units(values[111], inst.qty_decimals, "MaxFloor (111)")
    return NewOrder(account=account, symbol=inst.symbol, side=side, quantity=quantity,
                    price=price, order_type=order_type, tif=tif,
                    client_order_id=values.get(11, ""), expire_time=expire,
                    post_only="6" in values.get(18, "").split(" "), stop_price=stop_price,
                    display_quantity=display)


def _order_id(values: dict[int, str]) -> int:
    text = values.get(37, "")
    return int(text) if text.isdecimal() and len(text) < 19 else 0


def to_cancel(values: dict[int, str], account: int,
              instruments: dict[str, Instrument]) -> Cancel:
    """OrderCancelRequest (F) -> Cancel (by OrderID 37 when it is a tickline id, else by
    OrigClOrdID 41)."""
    inst = _instrument(values, instruments)
    return Cancel(account=account, symbol=inst.symbol, order_id=_order_id(values),
                  orig_client_order_id=values.get(41, ""),
                  client_order_id=values.get(11, ""))


def to_replace(values: dict[int, str], account: int,
               instruments: dict[str, Instrument]) -> Replace:
    """OrderCancelReplaceRequest (G) -> Replace (new total OrderQty, Price, StopPx,
    MaxFloor)."""
    inst = _instrument(values, instruments)
    price = parse_units(values[44], inst.price_decimals, "Price (44)") if 44 in values else 0
    qty = parse_units(values[38], inst.qty_decimals, "OrderQty (38)") if 38 in values else 0
    stop = parse_units(values[99], inst.price_decimals, "StopPx (99)") if 99 in values else 0
    display = (parse_units(values[111], inst.qty_decimals, "MaxFloor (111)")
               if 111 in values else 0)
    return Replace(account=account, symbol=inst.symbol, order_id=_order_id(values),
                   orig_client_order_id=values.get(41, ""), price=price, quantity=qty,
                   client_order_id=values.get(11, ""), stop_price=stop,
                   display_quantity=display)


_last_unique_ns = 0


def unique_ns() -> int:
    """Wall-clock ns, strictly increasing in this process (one past the previous value when
    the clock has not moved on): ids built from it never repeat, nor after a restart while
    the wall clock moves forward."""
    global _last_unique_ns
    now = time.time_ns()
    _last_unique_ns = now if now > _last_unique_ns else _last_unique_ns + 1
    return _last_unique_ns


# ExecType (150) and OrdStatus (39) per report kind; a fill's and a replace's/trigger's
# status depends on the quantities (the second entry: partially filled / with fills)
_EXEC_HEAD = {_NEW: (b"150=0\x0139=0\x01", b"150=0\x0139=0\x01"),
              _FILL: (b"150=F\x0139=2\x01", b"150=F\x0139=1\x01"),
              _CANCELLED: (b"150=4\x0139=4\x01", b"150=4\x0139=4\x01"),
              _REPLACED: (b"150=5\x0139=0\x01", b"150=5\x0139=1\x01"),
              _EXPIRED: (b"150=C\x0139=C\x01", b"150=C\x0139=C\x01"),
              _TRIGGERED: (b"150=L\x0139=0\x01", b"150=L\x0139=1\x01")}
_NO_LEAVES = frozenset((_CANCELLED, _EXPIRED))


def exec_report(r: ExecReport, inst: Instrument, transact_time: bytes, *,
                clid: str | None = None, orig_clid: str = "") -> bytes:
    """The body of the ExecutionReport (35=8) for ``r``. ``clid``/``orig_clid``: the
    ClOrdID/OrigClOrdID of the request this answers (a cancel or replace), else the order's.
    Fields: 37 11 41 17 150 39 (103) 55 54 (38 44 99) (32 31) 151 14 6 60 (58)."""
    kind = r.kind
    pd = inst.price_decimals
    qd = inst.qty_decimals
    leaves = r.leaves
    cum = r.cum_quantity
    heads = _EXEC_HEAD.get(kind)
    if heads is None:  # rejected (OrdRejReason only on a reject report proper)
        head = (b"150=8\x0139=8\x01103=%d\x01" % ORD_REJ.get(r.reason, 99)
                if kind == _REJECTED else b"150=8\x0139=8\x01")
        leaves = 0
    elif kind == _FILL:
        head = heads[1] if leaves else heads[0]
    else:
        head = heads[1] if cum else heads[0]
        if kind in _NO_LEAVES:
            leaves = 0
    cl = r.client_order_id if clid is None else clid
    order_id = r.order_id
    seq = r.seq
    quantity = r.quantity
    price = r.price
    if (seq and order_id and cl and quantity and price and not orig_clid and not r.stop_price
            and not r.text and kind != _REJECTED):
        # the common report (new, fill, cancel of a numbered limit order): one format
        if qd == 0 and pd == 2:
            qty_b = b"%d" % quantity
            px_b = b"%d.%02d" % divmod(price, 100) if price > 0 else units_bytes(price, 2)
        else:
            qty_b = units_bytes(quantity, qd)
            px_b = units_bytes(price, pd)
        side = r.side if r.side in (1, 2) else 1
        avg = avg_bytes(r.cum_notional, cum, inst) if cum else b"0"
        if kind == _FILL:
            return (b"37=%d\x0111=%s\x0117=%d-%d\x01%s55=%s\x0154=%d\x0138=%s\x0144=%s\x01"
                    b"32=%s\x0131=%s\x01151=%s\x0114=%s\x016=%s\x0160=%s\x01" % (
                        order_id, cl.encode(), r.account, seq, head, r.symbol.encode(), side,
                        qty_b, px_b, units_bytes(r.last_quantity, qd),
                        units_bytes(r.last_price, pd), units_bytes(leaves, qd),
                        units_bytes(cum, qd), avg, transact_time))
        return (b"37=%d\x0111=%s\x0117=%d-%d\x01%s55=%s\x0154=%d\x0138=%s\x0144=%s\x01"
                b"151=%s\x0114=%s\x016=%s\x0160=%s\x01" % (
                    order_id, cl.encode(), r.account, seq, head, r.symbol.encode(), side,
                    qty_b, px_b, units_bytes(leaves, qd), units_bytes(cum, qd), avg,
                    transact_time))
    out = b"37=%d\x01" % order_id if order_id else b"37=NONE\x01"
    if cl:
        out += b"11=%s\x01" % cl.encode()
    if orig_clid:
        out += b"41=%s\x01" % orig_clid.encode()
    if seq:
        out += b"17=%d-%d\x01%s55=%s\x0154=%d\x01" % (
            r.account, seq, head, r.symbol.encode(), r.side if r.side in (1, 2) else 1)
    else:  # not numbered (an unsequenced reject): an id of its own
        out += b"17=R%d-%d\x01%s55=%s\x0154=%d\x01" % (
            r.account, unique_ns(), head, r.symbol.encode(), r.side if r.side in (1, 2) else 1)
    if quantity:
        out += b"38=%s\x01" % units_bytes(quantity, qd)
    if price:
        out += b"44=%s\x01" % units_bytes(price, pd)
    if r.stop_price:
        out += b"99=%s\x01" % units_bytes(r.stop_price, pd)
    if kind == _FILL:
        out += b"32=%s\x0131=%s\x01" % (units_bytes(r.last_quantity, qd),
                                         units_bytes(r.last_price, pd))
    out += b"151=%s\x0114=%s\x016=%s\x0160=%s\x01" % (
        units_bytes(leaves, qd), units_bytes(cum, qd), avg_bytes(r.cum_notional, cum, inst),
        transact_time)
    if kind == _REJECTED or r.text:
        out += b"58=%s\x01" % _text(r.text or reject_name(r.reason))
    return out


def _text(text: str) -> bytes:
    """A Text (58) value: no SOH, ASCII (FIX 4.4 STRING)."""
    return text.replace("\x01", " ").encode("ascii", "replace")[:200]


def refused_report(values: dict[int, str], account: int, exec_id: str, reason: int,
                   text: str, transact_time: bytes) -> bytes:
    """ExecutionReport 150=8 for a NewOrderSingle refused at the gateway (before the engine)."""
    symbol = values.get(55, "") or "?"
    side = values.get(54, "1") if values.get(54) in ("1", "2") else "1"
    parts = [b"37=NONE\x01"]
    if values.get(11):
        parts.append(b"11=%s\x01" % values[11].encode("latin-1"))
    parts.append(b"17=%s\x01150=8\x0139=8\x01103=%d\x0155=%s\x0154=%s\x01151=0\x0114=0\x01"
                 b"6=0\x0160=%s\x0158=%s\x01" % (exec_id.encode(), ORD_REJ.get(reason, 99),
                                               symbol.encode("latin-1"), side.encode(),
                                               transact_time, _text(text)))
    return b"".join(parts)


def cancel_reject(values: dict[int, str], response_to: str, reason: int, text: str,
                  order_id: int = 0) -> bytes:
    """OrderCancelReject (35=9) for a refused F (``response_to`` "1") or G ("2")."""
    oid = str(order_id) if order_id else (values.get(37) or "NONE")
    cxl = 1 if reason == int(RejectReason.UNKNOWN_ORDER) else 99
    return (b"37=%s\x0111=%s\x0141=%s\x0139=8\x01434=%s\x01102=%d\x0158=%s\x01" % (
        oid.encode("latin-1"), (values.get(11) or "NONE").encode("latin-1"),
        (values.get(41) or "NONE").encode("latin-1"), response_to.encode(), cxl, _text(text)))


def status_report(state: OrderState, inst: Instrument, values: dict[int, str],
                  exec_id: str, transact_time: bytes) -> bytes:
    """ExecutionReport 150=I (order status) answering an OrderStatusRequest (H)."""
    pd = inst.price_decimals
    qd = inst.qty_decimals
    parts = [b"37=%d\x01" % state.order_id]
    if state.client_order_id:
        parts.append(b"11=%s\x01" % state.client_order_id.encode())
    if values.get(790):
        parts.append(b"790=%s\x01" % values[790].encode("latin-1"))
    parts.append(b"17=%s\x01150=I\x0139=%s\x0155=%s\x0154=%d\x0138=%s\x01" % (
        exec_id.encode(), STATUS.get(state.status, "0").encode(), state.symbol.encode(),
        state.side, fmt_units(state.quantity, qd).encode()))
    if state.price:
        parts.append(b"44=%s\x01" % fmt_units(state.price, pd).encode())
    parts.append(b"151=%s\x0114=%s\x016=%s\x0160=%s\x01" % (
        fmt_units(state.leaves, qd).encode(), fmt_units(state.cum_quantity, qd).encode(),
        fmt_avg(state.cum_notional, state.cum_quantity, inst).encode(), transact_time))
    return b"".join(parts)


def unknown_status_report(values: dict[int, str], exec_id: str, transact_time: bytes) -> bytes:
    """ExecutionReport 150=I 39=8 for an OrderStatusRequest about an unknown order."""
    side = values.get(54, "1") if values.get(54) in ("1", "2") else "1"
    return (b"37=%s\x0111=%s\x0117=%s\x01150=I\x0139=8\x0155=%s\x0154=%s\x01151=0\x0114=0\x01"
            b"6=0\x0160=%s\x0158=unknown order\x01" % (
                (values.get(37) or "NONE").encode("latin-1"),
                (values.get(11) or "NONE").encode("latin-1"), exec_id.encode(),
                (values.get(55) or "?").encode("latin-1"), side.encode(), transact_time))


def business_reject(ref_seq: str, ref_type: str, reason: int, text: str,
                    ref_id: str = "") -> bytes:
    """BusinessMessageReject (35=j): 380 reason (3 unsupported message type, 5 conditionally
    required field missing, 0 other)."""
    out = b"45=%s\x01372=%s\x01" % (ref_seq.encode("latin-1"), ref_type.encode("latin-1"))
    if ref_id:
        out += b"379=%s\x01" % ref_id.encode("latin-1")
    return out + b"380=%d\x0158=%s\x01" % (reason, _text(text))
