"""The report router: every execution report reaches the sessions of its account, once.

Every gateway (binary, WebSocket, FIX) uses this one router; none of them works out which
reports belong to whom. The rule:

1. A command's reports for the **submitting account** go back to the submitter with the
   command's reply (``Exchange.submit(cmd, reply, origin=port)``): its own accepted / rejected /
   fill / cancel / replace reports, in report-sequence order, in one response.
2. Every **other** report the command caused — the resting maker's fill, a self-trade cancel
   of another order, a GTD expiry (a ``TimeTick`` has no submitter), a cancel on disconnect
   — is delivered to the session that entered that order, as unsolicited reports. When that
   session is gone, or the order was entered without one, it goes to every open session of
   the order's account. A report of the submitting account about an order another of its
   sessions entered goes to that session too (its resting order was filled by a sibling).
3. **Drop copies** receive every report of their account, whichever session caused it
   (:meth:`ReportRouter.attach` with ``drop_copy=True``), or of every account
   (``account=None``: admin only, checked by the gateway).

Deliveries happen per command, in sequence order, before that command's reply, so each
session sees the reports of its account in engine order (a response groups its command's
own reports). Reports for an account with no open session are not kept here: they are
numbered and re-derivable from the journal (see :mod:`tickline.stream.reports`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import FunctionType
from typing import Any, Final

import msgspec

from tickline.stream.reports import ExecKind, ExecReport

__all__ = ["ReportPort", "ReportRouter", "Unsolicited"]

Unsolicited = Callable[[list[ExecReport]], None]
"""A session's handler for reports it did not ask for (called on the exchange loop; must
not block: a gateway queues them on its connection)."""

_astuple: Final = msgspec.structs.astuple


def _probe() -> None:
    """(A function: compiled by mypyc, it is a builtin, not a Python function.)"""


COMPILED: Final = not isinstance(_probe, FunctionType)
"""True when this module runs compiled (mypyc): :meth:`ReportRouter.route` then reads a
report's kind, order id, leaves and account by one :func:`msgspec.structs.astuple` (each
``r.x`` is a generic attribute lookup there), interpreted by attribute reads (cheaper); the
probe :mod:`tickline.matching.replace` uses."""

_NEW: Final = int(ExecKind.NEW)
_REJECTED: Final = int(ExecKind.REJECTED)
_FILL: Final = int(ExecKind.FILL)
_CANCELLED: Final = int(ExecKind.CANCELLED)
_EXPIRED: Final = int(ExecKind.EXPIRED)


class ReportPort:
    """One session's attachment to the router: its account (None: a drop copy of every
    account) and its handler. :meth:`close` detaches it."""

    __slots__ = ("account", "deliver", "drop_copy", "open", "orders", "router")

    def __init__(self, router: ReportRouter, account: int | None, deliver: Unsolicited,
                 drop_copy: bool) -> None:
        self.router = router
        self.account = account
        self.deliver = deliver
        self.drop_copy = drop_copy
        self.open = True
        self.orders: set[int] = set()
        """The live orders this session entered (for cancel on disconnect)."""

    def close(self) -> None:
        """Detach: reports about the orders this session entered now go to the account's
        other sessions. Safe to call twice."""
        if self.open:
            self.open = False
            self.router._detach(self)


class ReportRouter:
    """Routes execution reports to report ports (see the module doc). Single writer: the
    exchange loop. :meth:`route` costs O(reports) plus one call per port reached."""

    def __init__(self) -> None:
        self._by_account: dict[int, list[ReportPort]] = {}
        self._copies: dict[int, list[ReportPort]] = {}
        self._drop_copies: list[ReportPort] = []
        self._owners: dict[int, ReportPort] = {}
        self.routed = 0
        self.unsolicited = 0

    def attach(self, account: int | None, deliver: Unsolicited, *,
               drop_copy: bool = False) -> ReportPort:
        """Attach a session of ``account``; ``drop_copy``: a read-only copy of every report
        of the account; ``account=None``: a drop copy of every account."""
        port = ReportPort(self, account, deliver, drop_copy or account is None)
        self._ports_of(port).append(port)
        return port

    def _ports_of(self, port: ReportPort) -> list[ReportPort]:
        if port.account is None:
            return self._drop_copies
        table = self._copies if port.drop_copy else self._by_account
        return table.setdefault(port.account, [])

    def _detach(self, port: ReportPort) -> None:
        ports = self._ports_of(port)
        if port in ports:
            ports.remove(port)
        if port.account is not None and not ports:
            (self._copies if port.drop_copy else self._by_account).pop(port.account, None)

    def route(self, reports: Sequence[ExecReport], account: Any,
              origin: ReportPort | None) -> list[ExecReport]:
        """Deliver one command's ``reports`` (the submitter's ``account``; ``origin`` is its
        port, if any) and return the submitting account's own reports for its reply.

        The reports' order ids and accounts are read as ``Any`` (and ``account`` is one):
        compiled, the dict operations and comparisons take the reports' own int objects
        instead of unboxing each and boxing it anew."""
        own: list[ExecReport] = []
        if not reports:
            return own
        owners = self._owners
        by_account = self._by_account
        copies = self._copies
        out: dict[ReportPort, list[ExecReport]] = {}  # insertion order: first reached

        drop_copies = self._drop_copies
        rs: Sequence[Any] = reports  # (Any: fields as objects compiled; no runtime cast()
        for r in rs:                 # call interpreted)
            if COMPILED:  # the four fields in one C call (each r.x is a generic lookup)
                f = _astuple(r)
                oid = f[5]
                kind: int = f[3]
                leaves: int = f[10]
                r_account = f[2]
            else:
                oid = r.order_id
                kind = r.kind
                leaves = r.leaves
                r_account = r.account
            if kind == _REJECTED:
                owner = None  # a refused request: only its submitter hears of it
            elif ((kind == _FILL and leaves == 0) or kind == _CANCELLED
                  or kind == _EXPIRED):  # r.ends_order, inline (no property call)
                owner = owners.pop(oid, None)
                if owner is not None:
                    owner.orders.discard(oid)
                    if not owner.open:
                        owner = None
            else:
                owner = owners.get(oid)
                if owner is not None and not owner.open:
                    owners.pop(oid, None)
                    owner = None
            if r_account == account:
                own.append(r)
                if origin is not None and kind == _NEW and leaves:
                    owners[oid] = origin
                    origin.orders.add(oid)
                if owner is not None:
                    if owner is not origin:
                        _send(out, owner, r)
                elif origin is None:
                    for port in by_account.get(r_account, ()):
                        _send(out, port, r)
            elif owner is not None:
                _send(out, owner, r)
            else:
                for port in by_account.get(r_account, ()):
                    _send(out, port, r)
            if copies:
                for port in copies.get(r_account, ()):
                    _send(out, port, r)
            for port in drop_copies:
                _send(out, port, r)
        self.routed += len(reports)
        for port, msgs in out.items():
            self.unsolicited += len(msgs)
            port.deliver(msgs)
        return own

    def statistics(self) -> dict[str, int]:
        """Counters: reports routed, unsolicited deliveries, ports and tracked orders."""
        return {
            "reports_routed": self.routed,
            "unsolicited_deliveries": self.unsolicited,
            "ports": (sum(len(v) for v in self._by_account.values())
                      + sum(len(v) for v in self._copies.values()) + len(self._drop_copies)),
            "tracked_orders": len(self._owners),
        }


def _send(out: dict[ReportPort, list[ExecReport]], port: ReportPort, r: ExecReport) -> None:
    """Queue ``r`` for ``port`` in one :meth:`ReportRouter.route` call (a module function:
    no closure is built per call on the release path)."""
    msgs = out.get(port)
    if msgs is None:
        out[port] = [r]
    else:
        msgs.append(r)
