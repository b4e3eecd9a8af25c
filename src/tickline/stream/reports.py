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
from enum import IntEnum
from fractions import Fraction
from typing import Any, cast

import msgspec

from tickline.matching.book import Order
from tickline.matching.events import (
    Accepted,
    Cancelled,
    Event,
    Expired,
    Rejected,
    Replaced,
    Trade,
    Triggered,
)

__all__ = ["ExecKind", "ExecReport", "OrderState", "OrderStatus", "ReportBuilder",
           "ReportBuilderState"]


class ExecKind(IntEnum):
    """What an :class:`ExecReport` reports (stable codes)."""

    NEW = 1
    REJECTED = 2
    FILL = 3
    CANCELLED = 4
    REPLACED = 5
    EXPIRED = 6
    TRIGGERED = 7


_NEW = int(ExecKind.NEW)
_REJECTED = int(ExecKind.REJECTED)
_FILL = int(ExecKind.FILL)
_CANCELLED = int(ExecKind.CANCELLED)
_REPLACED = int(ExecKind.REPLACED)
_EXPIRED = int(ExecKind.EXPIRED)
_TRIGGERED = int(ExecKind.TRIGGERED)


class ExecReport(msgspec.Struct, tag="exec", gc=False):
    """One execution report, for the owning account only.

    ``seq`` is the account's report sequence number; ``command_seq``/``ts`` those of the
    command that caused it. ``price``/``quantity`` are the order's limit price and total
    quantity, ``leaves`` its open quantity after this report, ``cum_quantity`` and
    ``cum_notional`` its fills so far. For fills ``last_price``/``last_quantity``/``trade_id``
    describe the execution. ``reason``/``text`` explain rejects (``RejectReason``) and cancels
    (``CancelReason``). ``order_id`` is 0 for a rejected new order. ``stop_price`` is the
    stop's on a ``TRIGGERED`` report (0 on the others).
    """

    seq: int
    ts: int
    account: int
    kind: int
    symbol: str
    order_id: int
    client_order_id: str
    side: int
    price: int
    quantity: int
    leaves: int
    last_price: int = 0
    last_quantity: int = 0
    trade_id: int = 0
    reason: int = 0
    text: str = ""
    cum_quantity: int = 0
    cum_notional: int = 0
    command_seq: int = 0
    stop_price: int = 0

    @property
    def avg_price(self) -> Fraction | None:
        """The exact average fill price in ticks (None before the first fill)."""
        if not self.cum_quantity:
            return None
        return Fraction(self.cum_notional, self.cum_quantity)

    @property
    def ends_order(self) -> bool:
        """True when the order is finished after this report (filled, cancelled or
        expired)."""
        kind = self.kind
        return ((kind == _FILL and self.leaves == 0) or kind == _CANCELLED
                or kind == _EXPIRED)


class OrderStatus(IntEnum):
    """An order's state as :meth:`ReportBuilder.order_state` tells it (stable codes)."""

    NEW = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELLED = 4
    EXPIRED = 5


class OrderState(msgspec.Struct, array_like=True, gc=False):
    """One order's current state (also its wire form in the binary protocol): ``leaves`` is
    the open quantity, ``cum_quantity``/``cum_notional`` its fills (exact average price
    :attr:`avg_price`)."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    status: int
    price: int
    quantity: int
    leaves: int
    cum_quantity: int
    cum_notional: int

    @property
    def avg_price(self) -> Fraction | None:
        """Exact average fill price in ticks (None before the first fill)."""
        return Fraction(self.cum_notional, self.cum_quantity) if self.cum_quantity else None


class _Live:
    """The builder's view of one live order."""

    __slots__ = ("account", "client_order_id", "cum_notional", "cum_quantity", "leaves",
                 "price", "quantity", "side", "symbol")

    def __init__(self, account: int, client_order_id: str, symbol: str, side: int, price: int,
                 quantity: int, leaves: int, cum_quantity: int = 0,
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
        return OrderState(order_id, self.account, self.client_order_id, self.symbol, self.side,
                          status, self.price, self.quantity,
                          self.leaves if status <= _PARTIAL else 0, self.cum_quantity,
                          self.cum_notional)


_OS_NEW = int(OrderStatus.NEW)
_PARTIAL = int(OrderStatus.PARTIALLY_FILLED)
_OS_FILLED = int(OrderStatus.FILLED)
_OS_CANCELLED = int(OrderStatus.CANCELLED)
_OS_EXPIRED = int(OrderStatus.EXPIRED)


class ReportBuilderState(msgspec.Struct, array_like=True, gc=False):
    """What a snapshot must keep for :class:`ReportBuilder` beyond the engine's books."""

    report_seqs: list[tuple[int, int]]
    """``(account, last report number)`` for every account that has had a report."""
    notionals: list[tuple[int, int]]
    """``(order_id, cumulative notional)`` of live orders with fills."""


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(ReportBuilderState)


class ReportBuilder:
    """Builds each command's execution reports and numbers them per account (see the module
    doc). Single writer: the exchange loop. Costs O(events) per command.

    ``books``: the engine's books (``engine.books``) when they already hold orders (after
    recovery); ``state``: the :meth:`state` saved with the snapshot those books came from.
    """

    key = "reports"
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

    def build(self, command_seq: int, ts: int, events: Sequence[Event]) -> list[ExecReport]:
        """The reports of one command's ``events``, in engine order, numbered per account.
        Must be called for every command, in sequence order (numbering depends on it)."""
        out: list[ExecReport] = []
        if not events:
            return out
        orders = self._orders
        seqs = self._seqs
        append = out.append
        for ev in cast(list[Any], events):
            kind = type(ev)
            if kind is Accepted:
                account = ev.account
                orders[ev.order_id] = _Live(account, ev.client_order_id, ev.symbol, ev.side,
                                            ev.price, ev.quantity, ev.quantity)
                if ev.client_order_id:
                    self._clids[(account, ev.client_order_id)] = ev.order_id
                n = seqs[account] = seqs.get(account, 0) + 1
                append(ExecReport(n, ts, account, _NEW, ev.symbol, ev.order_id,
                                  ev.client_order_id, ev.side, ev.price, ev.quantity,
                                  ev.quantity, command_seq=command_seq))
            elif kind is Trade:
                price = ev.price
                qty = ev.quantity
                for oid, account, leaves in ((ev.maker_order_id, ev.maker_account,
                                              ev.maker_leaves),
                                             (ev.taker_order_id, ev.taker_account,
                                              ev.taker_leaves)):
                    o = orders.get(oid)
                    if o is None:  # pragma: no cover - the engine never trades an unknown id
                        continue
                    o.cum_quantity += qty
                    o.cum_notional += price * qty
                    o.leaves = leaves
                    if leaves == 0:
                        del orders[oid]
                        self._finish(oid, o, _OS_FILLED)
                    n = seqs[account] = seqs.get(account, 0) + 1
                    append(ExecReport(n, ts, account, _FILL, ev.symbol, oid,
                                      o.client_order_id, o.side, o.price, o.quantity, leaves,
                                      price, qty, ev.trade_id, 0, "", o.cum_quantity,
                                      o.cum_notional, command_seq))
            elif kind is Cancelled or kind is Expired:
                account = ev.account
                o = orders.pop(ev.order_id, None)
                n = seqs[account] = seqs.get(account, 0) + 1
                expired = kind is Expired
                if o is not None:
                    self._finish(ev.order_id, o, _OS_EXPIRED if expired else _OS_CANCELLED)
                append(ExecReport(
                    n, ts, account, _EXPIRED if expired else _CANCELLED, ev.symbol,
                    ev.order_id, o.client_order_id if o is not None else "", ev.side,
                    ev.price, o.quantity if o is not None else ev.quantity, 0,
                    reason=0 if expired else ev.reason,
                    cum_quantity=o.cum_quantity if o is not None else 0,
                    cum_notional=o.cum_notional if o is not None else 0,
                    command_seq=command_seq))
            elif kind is Replaced:
                account = ev.account
                o = orders.get(ev.order_id)
                cum_q = cum_n = 0
                if o is not None:
                    if o.client_order_id != ev.client_order_id:
                        clids = self._clids
                        if clids.get((account, o.client_order_id)) == ev.order_id:
                            del clids[(account, o.client_order_id)]
                        if ev.client_order_id:
                            clids[(account, ev.client_order_id)] = ev.order_id
                    o.client_order_id = ev.client_order_id
                    o.price = ev.price
                    o.quantity = ev.quantity
                    o.leaves = ev.leaves
                    cum_q = o.cum_quantity
                    cum_n = o.cum_notional
                n = seqs[account] = seqs.get(account, 0) + 1
                append(ExecReport(n, ts, account, _REPLACED, ev.symbol, ev.order_id,
                                  ev.client_order_id, ev.side, ev.price, ev.quantity,
                                  ev.leaves, cum_quantity=cum_q, cum_notional=cum_n,
                                  command_seq=command_seq))
            elif kind is Triggered:
                account = ev.account
                o = orders.get(ev.order_id)
                n = seqs[account] = seqs.get(account, 0) + 1
                append(ExecReport(n, ts, account, _TRIGGERED, ev.symbol, ev.order_id,
                                  ev.client_order_id, ev.side, ev.price,
                                  o.quantity if o is not None else ev.quantity, ev.quantity,
                                  command_seq=command_seq, stop_price=ev.stop_price))
            elif kind is Rejected:
                account = ev.account
                if not account:
                    continue
                n = seqs[account] = seqs.get(account, 0) + 1
                append(ExecReport(n, ts, account, _REJECTED, ev.symbol, ev.order_id,
                                  ev.client_order_id, 0, 0, 0, 0, reason=ev.reason,
                                  text=ev.text, command_seq=command_seq))
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
