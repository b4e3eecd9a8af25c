"""Execution reports: one command's engine events turned into that command's reports.

:class:`ReportBuilder` is the one place where execution reports are made. The exchange calls
:meth:`ReportBuilder.build` once per command, in sequence order, with the command and its
events; it returns the command's reports, each stamped with its account's **report sequence
number** (1, 2, 3, ... per account, no gaps). The builder is deterministic — its output is a
function of the command stream alone — so the same journal replayed through a fresh builder
gives the same reports, byte for byte: session resume, drop copies and FIX resend rest on it.

One report per event per party (the rule, in one place):

===============  ==========================================================================
event            reports
===============  ==========================================================================
Accepted         NEW to the order's account
Rejected         REJECTED to the command's account (none for account 0: engine-internal)
Trade            FILL to the maker's account, then FILL to the taker's account
Cancelled        CANCELLED to the order's account (``reason``: a ``CancelReason``)
Replaced         REPLACED to the order's account
Expired          EXPIRED to the order's account
Triggered        TRIGGERED to the stop's account (``stop_price``; ``price`` 0: it entered as
                 a market order, else at that limit), before the fills it gets on entry
LevelChanged,    none (market data only)
StatusChanged
MassCancelled,   none: summaries of a MassCancel / CancelOrders / SetAccountStatus whose
AccountStatus-   orders each got their CANCELLED report already (reason MASS_CANCEL,
Changed          CANCEL_ON_DISCONNECT, KILL_SWITCH); the session layer answers the
                 command with their count
===============  ==========================================================================

Each report about an order carries its cumulative filled quantity and notional
(``cum_quantity``, ``cum_notional`` = the sum of price x quantity over its fills, in ticks x
lots), so the average price is the exact ratio ``cum_notional / cum_quantity``
(:attr:`ExecReport.avg_price`), never a float.

State: the builder mirrors every live order (account, client order id, side, price,
quantity, cumulative fills) and each account's last report number. After a restart it is
rebuilt from the engine's live orders plus :meth:`ReportBuilder.state` (saved inside each journal
snapshot: the report counters and the notional of partly filled orders), then the journal
tail.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from types import FunctionType
from typing import Any, ClassVar, Final, cast

import msgspec

from tickline.matching.book import Order
from tickline.matching.events import (
    Accepted,
    Cancelled,
    Expired,
    Rejected,
    Replaced,
    Trade,
    Triggered,
)
from tickline.stream.report_types import (
    ExecKind,
    ExecReport,
    OrderState,
    OrderStatus,
    ReportBuilderState,
)

_astuple: Final = msgspec.structs.astuple


def _probe() -> None:
    """(A function: compiled by mypyc, it is a builtin, not a Python function.)"""


COMPILED: Final = not isinstance(_probe, FunctionType)
"""True when this module runs compiled (mypyc): :meth:`ReportBuilder.build` then reads a
``Replaced`` by one :func:`msgspec.structs.astuple` (compiled code reads each ``ev.x`` by
the generic attribute lookup, ~180 instructions), interpreted by specialized attribute
reads (cheaper there); the probe :mod:`tickline.matching.replace` uses."""

_NEW: Final = int(ExecKind.NEW)
_REJECTED: Final = int(ExecKind.REJECTED)
_FILL: Final = int(ExecKind.FILL)
_CANCELLED: Final = int(ExecKind.CANCELLED)
_REPLACED: Final = int(ExecKind.REPLACED)
_EXPIRED: Final = int(ExecKind.EXPIRED)
_TRIGGERED: Final = int(ExecKind.TRIGGERED)
_OS_NEW: Final = int(OrderStatus.NEW)
_PARTIAL: Final = int(OrderStatus.PARTIALLY_FILLED)
_OS_FILLED: Final = int(OrderStatus.FILLED)
_OS_CANCELLED: Final = int(OrderStatus.CANCELLED)
_OS_EXPIRED: Final = int(OrderStatus.EXPIRED)

__all__ = ["ExecKind", "ExecReport", "OrderState", "OrderStatus", "ReportBuilder",
           "ReportBuilderState"]

_ExecReport: Final = ExecReport
_OrderState: Final = OrderState
_Accepted: Final = Accepted
_Trade: Final = Trade
_Cancelled: Final = Cancelled
_Expired: Final = Expired
_Replaced: Final = Replaced
_Triggered: Final = Triggered
_Rejected: Final = Rejected


class _Live:
    """The builder's view of one live order. ``account``, ``price`` and ``quantity`` are
    ``Any``: compiled, they hold the event's own int objects, which every report about the
    order passes on as they are (a native ``int`` field would be boxed anew per report)."""

    __slots__ = ("account", "client_order_id", "cum_notional", "cum_quantity", "leaves",
                 "price", "quantity", "side", "symbol")

    def __init__(self, account: Any, client_order_id: str, symbol: str, side: int, price: Any,
                 quantity: Any, leaves: int, cum_quantity: int = 0,
                 cum_notional: int = 0) -> None:
        self.account = account
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.price = price
        self.quantity = quantity
        self.leaves = leaves
        self.cum_quantity = cum_quantity
        self.cum_notional = cum_notional

    def state(self, order_id: int, status: int) -> OrderState:
        return _OrderState(order_id, self.account, self.client_order_id, self.symbol, self.side,
                          status, self.price, self.quantity,
                          self.leaves if status <= _PARTIAL else 0, self.cum_quantity,
                          self.cum_notional)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(ReportBuilderState)


class ReportBuilder:
    """Builds each command's execution reports and numbers them per account (see the module
    doc). Single writer: the exchange loop. Costs O(events) per command.

    ``books``: the engine's books (``engine.books``) when they already hold orders (after
    recovery); ``state``: the :meth:`state` saved with the snapshot those books came from.
    """

    key: ClassVar[str] = "reports"
    """The name of this component's state inside a journal snapshot."""

    def __init__(self, orders: Iterable[Order] | None = None,
                 state: bytes | None = None, *, finished_capacity: int = 65536) -> None:
        self._orders: dict[int, _Live] = {}
        self._seqs: dict[int, int] = {}
        self._clids: dict[tuple[int, str], int] = {}
        # oldest first; an OrderedDict because popping the oldest entry of a plain dict is
        # O(entries deleted since its last resize) -- quadratic under steady churn
        self._finished: OrderedDict[int, OrderState] = OrderedDict()
        self.finished_capacity = finished_capacity
        self.reports = 0
        if orders is not None or state is not None:
            self.restore(state, orders or ())

    # -- persistence -------------------------------------------------------------------------

    def state(self) -> bytes:
        """The state to save with a snapshot taken now (between commands)."""
        return _state_encoder.encode(ReportBuilderState(
            sorted(self._seqs.items()),
            [(oid, o.cum_notional) for oid, o in self._orders.items() if o.cum_notional]))

    def restore(self, state: bytes | None, orders: Iterable[Order]) -> None:
        """Rebuild from the engine's live ``orders`` (``engine.orders.values()``: resting
        orders *and* armed stops, which rest outside the books) and a saved :meth:`state`
        (None: nothing was saved, i.e. no report has been numbered yet)."""
        saved = _state_decoder.decode(state) if state is not None else None
        notionals = dict(saved.notionals) if saved is not None else {}
        self._seqs = dict(saved.report_seqs) if saved is not None else {}
        self._orders = {}
        self._clids = {}
        self._finished = OrderedDict()
        for o in orders:
            # an iceberg's open quantity is its visible slice plus its reserve
            self._orders[o.order_id] = _Live(o.account, o.client_order_id, o.symbol, o.side,
                                             o.price, o.quantity, o.leaves + o.hidden,
                                             o.filled, notionals.get(o.order_id, 0))
            if o.client_order_id:
                self._clids[(o.account, o.client_order_id)] = o.order_id

    # -- order state -------------------------------------------------------------------------

    def order_state(self, account: int, order_id: int = 0,
                    client_order_id: str = "") -> OrderState | None:
        """The state of ``account``'s order (by engine id, or by client order id when the id
        is 0): live orders always, finished ones while among the last
        ``finished_capacity`` to finish since the server started. None for an unknown
        order and for another account's (the caller cannot tell the two apart)."""
        if not order_id:
            order_id = self._clids.get((account, client_order_id), 0)
        o = self._orders.get(order_id)
        if o is not None:
            if o.account != account:
                return None
            return o.state(order_id, _PARTIAL if o.cum_quantity else _OS_NEW)
        done = self._finished.get(order_id)
        return done if done is not None and done.account == account else None

    def open_orders(self, account: int, symbol: str | None = None) -> list[OrderState]:
        """``account``'s live orders (optionally of one symbol), by order id. O(live orders)."""
        return [o.state(oid, _PARTIAL if o.cum_quantity else _OS_NEW)
                for oid, o in sorted(self._orders.items())
                if o.account == account and (symbol is None or o.symbol == symbol)]

    def _finish(self, order_id: int, o: _Live, status: int) -> None:
        finished = self._finished
        finished[order_id] = o.state(order_id, status)
        if len(finished) > self.finished_capacity:
            old_id, old = finished.popitem(last=False)
            if old.client_order_id and self._clids.get(
                    (old.account, old.client_order_id)) == old_id:
                del self._clids[(old.account, old.client_order_id)]

    # -- building ----------------------------------------------------------------------------

    def last_seq(self, account: int) -> int:
        """The last report number given to ``account`` (0: none yet)."""
        return self._seqs.get(account, 0)

    def report_seqs(self) -> dict[int, int]:
        """Every account's last report number (a copy)."""
        return dict(self._seqs)

    def build(self, command_seq: Any, ts: Any, events: Sequence[Any]) -> list[ExecReport]:
        """The reports of one command's ``events``, in engine order, numbered per account.
        Must be called for every command, in sequence order (numbering depends on it).

        ``command_seq``/``ts`` (the command's int objects) and the event fields passed on
        are ``Any`` here: compiled, each report takes the objects as they came (an ``int``
        would be unboxed on the way in and boxed anew for every report); only the fields
        that arithmetic or a branch needs are unboxed."""
        out: list[ExecReport] = []
        if not events:
            return out
        orders: dict[Any, _Live] = self._orders
        seqs: dict[Any, Any] = self._seqs
        # Every ExecReport is built with positional arguments (seq, ts, account, kind,
        # symbol, order_id, client_order_id, side, price, quantity, leaves, last_price,
        # last_quantity, trade_id, reason, text, cum_quantity, cum_notional, command_seq,
        # stop_price): keywords cost a name match per argument. Replaced first: most
        # events of the exchange-core mix are moves.
        # The events as ``Any``: compiled, a list (the list loop; no per-item check against
        # the union of event types); interpreted, no cast() call (a generic alias and a
        # Python call per command, ~800 instructions).
        evs: list[Any] = (cast(list[Any], events) if COMPILED
                          else events)  # type: ignore[assignment]
        for ev in evs:
            kind = type(ev)
            if kind is _Replaced:
                if COMPILED:  # every field in one C call (each ev.x is a generic lookup)
                    f = _astuple(ev)
                    account: Any = f[1]
                    order_id: Any = f[0]
                    clid: str = f[2]
                    symbol: Any = f[3]
                    side: Any = f[4]
                    price: Any = f[5]
                    quantity: Any = f[6]
                    leaves: Any = f[7]
                else:
                    account = ev.account
                    order_id = ev.order_id
                    clid = ev.client_order_id
                    price = ev.price
                    quantity = ev.quantity
                    leaves = ev.leaves
                    symbol = ev.symbol
                    side = ev.side
                o = orders.get(order_id)
                cum_q: Any = 0
                cum_n: Any = 0
                if o is not None:
                    if o.client_order_id != clid:
                        clids = self._clids
                        if clids.get((account, o.client_order_id)) == order_id:
                            del clids[(account, o.client_order_id)]
                        if clid:
                            clids[(account, clid)] = order_id
                    o.client_order_id = clid
                    o.price = price
                    o.quantity = quantity
                    o.leaves = leaves
                    cum_q = o.cum_quantity
                    cum_n = o.cum_notional
                n = seqs.get(account, 0) + 1
                seqs[account] = n
                out.append(_ExecReport(n, ts, account, _REPLACED, symbol, order_id, clid,
                                   side, price, quantity, leaves, 0, 0, 0, 0, "", cum_q,
                                   cum_n, command_seq, 0))
            elif kind is _Accepted:
                if COMPILED:  # as for Replaced: one C call, not seven generic lookups
                    f = _astuple(ev)
                    order_id = f[0]
                    account = f[1]
                    clid = f[2]
                    symbol = f[3]
                    side = f[4]
                    price = f[7]
                    quantity = f[8]
                else:
                    account = ev.account
                    order_id = ev.order_id
                    clid = ev.client_order_id
                    symbol = ev.symbol
                    side = ev.side
                    price = ev.price
                    quantity = ev.quantity
                orders[order_id] = _Live(account, clid, symbol, side, price, quantity,
                                         quantity)
                if clid:
                    self._clids[(account, clid)] = order_id
                n = seqs.get(account, 0) + 1
                seqs[account] = n
                out.append(_ExecReport(n, ts, account, _NEW, symbol, order_id, clid, side, price,
                                   quantity, quantity, 0, 0, 0, 0, "", 0, 0, command_seq, 0))
            elif kind is _Trade:
                if COMPILED:  # as for Replaced: one C call, not ten generic lookups
                    f = _astuple(ev)
                    trade_id = f[0]
                    symbol = f[1]
                    price = f[2]
                    qty: Any = f[3]
                    parties = ((f[5], f[6], f[7]), (f[8], f[9], f[10]))
                else:
                    price = ev.price
                    qty = ev.quantity
                    symbol = ev.symbol
                    trade_id = ev.trade_id
                    parties = ((ev.maker_order_id, ev.maker_account, ev.maker_leaves),
                               (ev.taker_order_id, ev.taker_account, ev.taker_leaves))
                for oid, account, leaves in parties:
                    o = orders.get(oid)
                    if o is None:  # pragma: no cover - the engine never trades an unknown id
                        continue
                    o.cum_quantity += qty
                    o.cum_notional += price * qty
                    o.leaves = leaves
                    if leaves == 0:
                        del orders[oid]
                        self._finish(oid, o, _OS_FILLED)
                    n = seqs.get(account, 0) + 1
                    seqs[account] = n
                    out.append(_ExecReport(n, ts, account, _FILL, symbol, oid, o.client_order_id,
                                       o.side, o.price, o.quantity, leaves, price, qty,
                                       trade_id, 0, "", o.cum_quantity, o.cum_notional,
                                       command_seq, 0))
            elif kind is _Cancelled or kind is _Expired:
                account = ev.account
                order_id = ev.order_id
                o = orders.pop(order_id, None)
                n = seqs.get(account, 0) + 1
                seqs[account] = n
                expired = kind is _Expired
                if o is not None:
                    self._finish(order_id, o, _OS_EXPIRED if expired else _OS_CANCELLED)
                    out.append(_ExecReport(
                        n, ts, account, _EXPIRED if expired else _CANCELLED, ev.symbol,
                        order_id, o.client_order_id, ev.side, ev.price, o.quantity, 0, 0, 0,
                        0, 0 if expired else ev.reason, "", o.cum_quantity, o.cum_notional,
                        command_seq, 0))
                else:
                    out.append(_ExecReport(
                        n, ts, account, _EXPIRED if expired else _CANCELLED, ev.symbol,
                        order_id, "", ev.side, ev.price, ev.quantity, 0, 0, 0, 0,
                        0 if expired else ev.reason, "", 0, 0, command_seq, 0))
            elif kind is _Triggered:
                account = ev.account
                o = orders.get(ev.order_id)
                n = seqs.get(account, 0) + 1
                seqs[account] = n
                out.append(_ExecReport(n, ts, account, _TRIGGERED, ev.symbol, ev.order_id,
                                   ev.client_order_id, ev.side, ev.price,
                                   o.quantity if o is not None else ev.quantity, ev.quantity,
                                   0, 0, 0, 0, "", 0, 0, command_seq, ev.stop_price))
            elif kind is _Rejected:
                account = ev.account
                if not account:
                    continue
                n = seqs.get(account, 0) + 1
                seqs[account] = n
                out.append(_ExecReport(n, ts, account, _REJECTED, ev.symbol, ev.order_id,
                                   ev.client_order_id, 0, 0, 0, 0, 0, 0, 0, ev.reason,
                                   ev.text, 0, 0, command_seq, 0))
        # MassCancelled / AccountStatusChanged (and depth, status) make no report: the
        # Cancelled events before them did.
        # Orders that finished inside this command without a report that ends them (an
        # IOC/market/FOK remainder is reported as Cancelled, so only fully filled takers
        # are removed above) need no cleanup: every terminal event is handled.
        self.reports += len(out)
        return out

    def check(self, live: Mapping[int, Order]) -> None:
        """Assert that the mirror holds exactly the engine's live orders (``engine.orders``)
        with the same cumulative fills. For tests; O(orders)."""
        assert set(live) == set(self._orders), (
            f"report mirror differs: extra {sorted(set(self._orders) - set(live))[:5]}, "
            f"missing {sorted(set(live) - set(self._orders))[:5]}")
        for oid, o in live.items():
            mine = self._orders[oid]
            assert mine.cum_quantity == o.filled, f"order {oid}: cum {mine.cum_quantity}"
            assert (mine.account, mine.side, mine.price, mine.quantity, mine.leaves,
                    mine.symbol) == (o.account, o.side, o.price, o.quantity,
                                     o.leaves + o.hidden, o.symbol), f"order {oid} differs"
