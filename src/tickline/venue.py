"""Venue services for order-entry sessions, below every gateway: resume, order status, open
orders, mass cancel, cancel on disconnect.

The binary gateway uses these today; the FIX and WebSocket gateways reuse them, so the rules
live here once:

* **Resume** (:meth:`VenueServices.resume`): a session that logs on with ``resume_from=N``
  gets every report of its account numbered ``N+1 .. M`` (``M`` = the account's last report
  at logon, sent in the logon answer) before anything live — from memory or the journal
  (:mod:`tickline.resume`) — then the live ones, all numbered above ``M``. While the journal
  is being read the session holds its live output back, so the order on the wire is exact.
* **Order status / open orders** (:meth:`VenueServices.order_status`,
  :meth:`VenueServices.open_orders`): queries answered in sequence by the exchange (they see
  every command submitted before them), from the report builder's order state. Another
  account's order gets the same answer as an order that does not exist.
* **Mass cancel** (:meth:`VenueServices.mass_cancel`): one journaled ``MassCancel`` command.
* **Cancel on disconnect** (:meth:`VenueServices.cancel_on_disconnect`): one journaled
  ``CancelOrders`` command listing the orders the session entered that are still live when
  the sequencer reaches it (so orders the session sent just before dropping are included).
"""

from __future__ import annotations

from collections.abc import Callable

from tickline.exchange import Exchange, Reply
from tickline.matching import CancelOrders, CancelReason, Command, MassCancel
from tickline.resume import ResumeError
from tickline.stream.reports import ExecReport, OrderState
from tickline.stream.routing import ReportPort

__all__ = ["ResumeError", "VenueServices"]


class VenueServices:
    """The session-level services of one :class:`~tickline.exchange.Exchange`."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.resumes = 0
        self.resumed_reports = 0
        self.cancels_on_disconnect = 0

    # -- resume --------------------------------------------------------------------------------

    def resume(self, account: int, after: int) -> tuple[int, list[ExecReport] | None]:
        """Start a resume of ``account`` after report ``after``: returns ``(last, reports)``
        where ``last`` is the account's last report number now and ``reports`` the missed
        ones if memory holds them (None: call :meth:`missed` and hold live output until it
        returns). Raises :class:`ResumeError` for an ``after`` beyond ``last``."""
        ex = self.exchange
        last = ex.reports.last_seq(account)
        ex.resumer.check(account, after, last)
        self.resumes += 1
        got = ex.resumer.recent(account, after, last)
        if got is not None:
            self.resumed_reports += len(got)
        return last, got

    async def missed(self, account: int, after: int, last: int) -> list[ExecReport]:
        """The reports ``after+1 .. last`` rebuilt from the journal (off the loop)."""
        ex = self.exchange
        got = await ex.resumer.missed(account, after, last, ex.engine.last_seq)
        self.resumed_reports += len(got)
        return got

    # -- queries -------------------------------------------------------------------------------

    def order_status(self, account: int, order_id: int, client_order_id: str,
                     reply: Callable[[OrderState | None], None]) -> None:
        """Ask for one order's state in sequence; ``reply(None)`` for an unknown or foreign
        order. Raises ``ExchangeBusy``/``ExchangeStopped`` like a submit."""
        builder = self.exchange.reports
        self.exchange.query(lambda: builder.order_state(account, order_id, client_order_id),
                            reply)

    def open_orders(self, account: int, symbol: str | None,
                    reply: Callable[[list[OrderState]], None]) -> None:
        """Ask for the account's open orders (optionally of one symbol) in sequence."""
        builder = self.exchange.reports
        self.exchange.query(lambda: builder.open_orders(account, symbol), reply)

    # -- cancels -------------------------------------------------------------------------------

    def mass_cancel(self, account: int, symbol: str, side: int, reply: Reply,
                    origin: ReportPort | None) -> None:
        """Submit one ``MassCancel`` (the reply carries a cancel report per order)."""
        self.exchange.submit(MassCancel(account=account, symbol=symbol, side=side), reply,
                             origin)

    def cancel_on_disconnect(self, port: ReportPort, account: int) -> None:
        """Cancel the orders ``port``'s session entered, as one journaled command built when
        the sequencer reaches it (nothing is submitted if none is live then)."""
        engine = self.exchange.engine

        def still_live() -> Command | None:
            ids = tuple(sorted(oid for oid in port.orders if oid in engine.orders))
            if not ids:
                return None
            self.cancels_on_disconnect += 1
            return CancelOrders(account=account, order_ids=ids,
                                reason=int(CancelReason.CANCEL_ON_DISCONNECT))

        self.exchange.submit_deferred(still_live)

    def statistics(self) -> dict[str, int]:
        return {"resumes": self.resumes, "resumed_reports": self.resumed_reports,
                "cancels_on_disconnect": self.cancels_on_disconnect,
                "resumes_from_journal": self.exchange.resumer.from_journal}
