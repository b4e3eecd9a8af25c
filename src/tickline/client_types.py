"""The values and errors of :mod:`tickline.client`, and the helpers that shape them.

Decimal/enum conversion at the client's edge (``"buy"``, ``"gtc"``, ``"101.25"`` to the wire's
integer codes and units) and the turning of a :class:`~tickline.gateway.protocol.Response`
into what :class:`~tickline.client.Client`'s awaiting methods return (:class:`OrderAck`, a
report) or raise (:class:`OrderRejectedError`). No I/O here; :mod:`tickline.client`
re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

from tickline.gateway import protocol as p
from tickline.matching import OrderType, RejectReason, Side, TimeInForce, reject_reason_name

__all__ = [
    "ClientError",
    "Decimalish",
    "OrderAck",
    "OrderRejectedError",
    "decimal_arg",
    "enum_code",
    "expect_report",
    "first_or_raise",
    "first_report",
    "order_ack",
    "side_code",
]

Decimalish = str | Decimal | int


class ClientError(Exception):
    """The connection failed, logon was refused, or the server sent an Error and closed."""


class OrderRejectedError(ClientError):
    """A request was rejected. ``reason`` is a :class:`RejectReason` (or the raw int if this
    client does not know the code), ``text`` the server's explanation."""

    def __init__(self, request_id: int, report: p.OrderRejected) -> None:
        try:
            reason: RejectReason | int = RejectReason(report.reason)
        except ValueError:
            reason = report.reason
        super().__init__(f"request {request_id} rejected: {reject_reason_name(report.reason)}: "
                         f"{report.text}")
        self.request_id = request_id
        self.reason = reason
        self.text = report.text
        self.report = report


@dataclass(slots=True)
class OrderAck:
    """A new order's outcome: accepted with ``order_id``; ``fills`` it got on arrival;
    ``leaves`` (integer units) open after them; ``status`` one of ``new``,
    ``partially_filled``, ``filled``, ``cancelled`` (e.g. an IOC remainder)."""

    request_id: int
    order_id: int
    client_order_id: str
    symbol: str
    leaves: int
    status: str
    accepted: p.OrderAccepted
    fills: list[p.Fill] = field(default_factory=list)
    reports: list[p.Report] = field(default_factory=list)

    @property
    def triggered(self) -> p.OrderTriggered | None:
        """The stop's trigger report if it triggered on arrival (else None: a stop that
        triggers later reports it unsolicited, like its fills)."""
        for r in self.reports:
            if isinstance(r, p.OrderTriggered) and r.order_id == self.order_id:
                return r
        return None


_SIDES = {"buy": Side.BUY, "sell": Side.SELL, "b": Side.BUY, "s": Side.SELL}


def side_code(side: str | int) -> int:
    """``"buy"``/``"sell"`` (or ``"b"``/``"s"``, any case) or a :class:`Side` value, as the
    wire's side code; ``ValueError`` for anything else."""
    if isinstance(side, str):
        try:
            return int(_SIDES[side.lower()])
        except KeyError:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}") from None
    return int(Side(side))


def enum_code(value: str | int, enum: type[OrderType] | type[TimeInForce], what: str) -> int:
    """A member name of ``enum`` (any case) or its value, as the wire's code; ``ValueError``
    naming ``what`` and the allowed names otherwise."""
    if isinstance(value, str):
        try:
            return int(enum[value.upper()])
        except KeyError:
            raise ValueError(f"{what} must be one of {[m.name.lower() for m in enum]}, "
                             f"got {value!r}") from None
    return int(enum(value))


def decimal_arg(value: Decimalish) -> str | Decimal:
    """A decimal argument as :meth:`Instrument.price_from_str`/``qty_from_str`` take it: an
    ``int`` means whole units; a ``bool`` is refused (``TypeError``), not taken as 0/1."""
    if isinstance(value, bool):
        raise TypeError(f"expected a decimal, got {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    return value


T = TypeVar("T")


def first_report(resp: p.Response) -> p.Report:
    """The first report of a Response; :class:`ClientError` if it has none."""
    if not resp.reports:
        raise ClientError(f"request {resp.request_id}: empty response")
    return resp.reports[0]


def first_or_raise(resp: p.Response) -> p.Report:
    """The first report, or :class:`OrderRejectedError` if it is a reject."""
    first = first_report(resp)
    if isinstance(first, p.OrderRejected):
        raise OrderRejectedError(resp.request_id, first)
    return first


def order_ack(resp: p.Response) -> OrderAck:
    """Shape a new order's Response into an :class:`OrderAck` (status from its fills and a
    cancel of the remainder); raise :class:`OrderRejectedError` for a reject."""
    first = first_report(resp)
    if isinstance(first, p.OrderRejected):
        raise OrderRejectedError(resp.request_id, first)
    if not isinstance(first, p.OrderAccepted):
        raise ClientError(f"request {resp.request_id}: unexpected first report {first!r}")
    fills = [r for r in resp.reports if isinstance(r, p.Fill) and r.order_id == first.order_id]
    leaves = fills[-1].leaves if fills else first.leaves
    cancelled = any(isinstance(r, p.OrderCancelled) and r.order_id == first.order_id
                    for r in resp.reports)
    if cancelled:
        status, leaves = "cancelled", 0
    elif leaves == 0:
        status = "filled"
    elif fills:
        status = "partially_filled"
    else:
        status = "new"
    return OrderAck(resp.request_id, first.order_id, first.client_order_id, first.symbol,
                    leaves, status, first, fills, list(resp.reports))


def expect_report(resp: p.Response, kind: type[T]) -> T:
    """The first report of type ``kind`` in a Response; :class:`OrderRejectedError` for a
    reject, :class:`ClientError` if there is no such report."""
    first = first_report(resp)
    if isinstance(first, p.OrderRejected):
        raise OrderRejectedError(resp.request_id, first)
    for r in resp.reports:
        if isinstance(r, kind):
            return r
    raise ClientError(f"request {resp.request_id}: expected {kind.__name__}, got {first!r}")
