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
  It travels in the high-priority lane like any cancel, so a flood of new orders filling
  the normal lane does not keep it out; if the ring refuses it anyway (the account's own
  commands fill the normal lane, where it then waits behind them), it is retried on a timer
  (``cancel_on_disconnect_retries``) rather than dropped, for up to
  ``retry_seconds`` (10 s); only then is it given up, logged and counted
  (``cancel_on_disconnect_failures``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client.metrics_core import Metric

from tickline.core.metrics import metric_families
from tickline.exchange import Exchange, ExchangeBusy, ExchangeStopped, Reply
from tickline.matching import CancelOrders, CancelReason, Command, MassCancel
from tickline.resume import ResumeError
from tickline.stream.reports import ExecReport, OrderState
from tickline.stream.routing import ReportPort

__all__ = ["ResumeError", "VenueServices"]

log = logging.getLogger(__name__)

_RETRY_FIRST = 0.001
"""Seconds before the first retry of a refused cancel on disconnect (doubling each time, up
to :data:`_RETRY_MAX`): a full ring usually drains within a batch or two."""
_RETRY_MAX = 0.05


class VenueServices:
    """The session-level services of one :class:`~tickline.exchange.Exchange`."""

    def __init__(self, exchange: Exchange, *, retry_seconds: float = 10.0) -> None:
        self.exchange = exchange
        self.retry_seconds = retry_seconds
        """How long a cancel on disconnect refused by a full ring is retried (bounded)."""
        self.resumes = 0
        self.resumed_reports = 0
        self.cancels_on_disconnect = 0
        self.cancel_on_disconnect_retries = 0
        """Cancels on disconnect the full inbound ring refused and that were tried again."""
        self.cancel_on_disconnect_failures = 0
        """Cancels on disconnect given up: the ring stayed full for ``retry_seconds``, or
        the exchange stopped meanwhile (logged; the session's orders stay live)."""

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
        the sequencer reaches it (nothing is submitted if none is live then). Never dropped
        for a full ring: it goes in the high-priority lane, and if refused it is retried
        (counted) for up to ``retry_seconds`` on the running loop. Raises
        ``ExchangeStopped`` once the exchange is stopping."""
        engine = self.exchange.engine

        def still_live() -> Command | None:
            ids = tuple(sorted(oid for oid in port.orders if oid in engine.orders))
            if not ids:
                return None
            self.cancels_on_disconnect += 1
            return CancelOrders(account=account, order_ids=ids,
                                reason=int(CancelReason.CANCEL_ON_DISCONNECT))

        try:
            self.exchange.submit_deferred_cancel(account, still_live)
        except ExchangeBusy:
            loop = asyncio.get_running_loop()
            self._retry(loop, account, still_live, loop.time() + self.retry_seconds,
                        _RETRY_FIRST)

    def _retry(self, loop: asyncio.AbstractEventLoop, account: int,
               make: Callable[[], Command | None], give_up: float, delay: float) -> None:
        """Try the refused cancel again after ``delay`` s (doubling, bounded by the time
        ``give_up``); each refusal counted, the last one logged."""
        self.cancel_on_disconnect_retries += 1

        def again() -> None:
            try:
                self.exchange.submit_deferred_cancel(account, make)
            except ExchangeBusy:
                if loop.time() >= give_up:
                    self.cancel_on_disconnect_failures += 1
                    log.error("cancel on disconnect of account %d given up: the inbound ring "
                              "stayed full for %gs; its orders stay live", account,
                              self.retry_seconds)
                    return
                self._retry(loop, account, make, give_up, min(delay * 2, _RETRY_MAX))
            except ExchangeStopped:
                self.cancel_on_disconnect_failures += 1
                log.warning("cancel on disconnect of account %d not submitted: the exchange "
                            "stopped while it waited for room", account)

        loop.call_later(delay, again)

    def counters(self) -> dict[str, int]:
        """This gateway's session-service counters (each gateway has its own services)."""
        return {"resumes": self.resumes, "resumed_reports": self.resumed_reports,
                "cancels_on_disconnect": self.cancels_on_disconnect,
                "cancel_on_disconnect_retries": self.cancel_on_disconnect_retries,
                "cancel_on_disconnect_failures": self.cancel_on_disconnect_failures}

    def statistics(self) -> dict[str, int]:
        return {**self.counters(), "resumes_from_journal": self.exchange.resumer.from_journal}

    def families(self, prefix: str) -> list[Metric]:
        """:meth:`counters` as Prometheus families ``<prefix>_<name>_total`` (a gateway's
        collector adds them to its own)."""
        return metric_families(prefix, self.counters(), [], help_text=_HELP)


_HELP = {"resumes": "logons that resumed after a report number",
         "resumed_reports": "reports re-sent to resuming sessions",
         "cancels_on_disconnect": "cancel-on-disconnect commands that cancelled orders",
         "cancel_on_disconnect_retries": "cancels on disconnect refused by a full inbound "
         "ring and tried again",
         "cancel_on_disconnect_failures": "cancels on disconnect given up (ring full for "
         "retry_seconds, or the exchange stopped; logged)"}
