"""The execution-report types: what :class:`~tickline.stream.reports.ReportBuilder` builds
and the binary protocol, FIX and the journal-derived resume carry.

They live apart from the builder because they are ``msgspec`` structs whose class keywords
(``tag=``, ``array_like=``, ``gc=``) fix their encodings: a module that defines a Struct is
never compiled (mypyc would drop the keywords), while the builder is.
:mod:`tickline.stream.reports` re-exports every name.
"""

from __future__ import annotations

from enum import IntEnum
from fractions import Fraction

import msgspec

__all__ = ["ExecKind", "ExecReport", "OrderState", "OrderStatus", "ReportBuilderState"]


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


class ReportBuilderState(msgspec.Struct, array_like=True, gc=False):
    """What a snapshot must keep for :class:`ReportBuilder` beyond the engine's books."""

    report_seqs: list[tuple[int, int]]
    """``(account, last report number)`` for every account that has had a report."""
    notionals: list[tuple[int, int]]
    """``(order_id, cumulative notional)`` of live orders with fills."""
