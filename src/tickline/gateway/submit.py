"""Submitting one socket read's commands at once, and why the rest were refused: shared by
the binary and FIX gateways (each answers the refused ones in its own wire format).

:meth:`~tickline.exchange.Exchange.submit_many` accepts a prefix; a command it did not take
met a full ring (``THROTTLED``, "exchange busy"), a stopping exchange (``THROTTLED``, "server
is stopping") or, in cluster mode, no engine able to take it (``CLUSTER_UNAVAILABLE`` 412
with the reason, :class:`~tickline.exchange.ExchangeUnavailable`). A cluster gateway
stops a read at the first unavailable command without raising (the ones before it were
accepted), so after a short count the rest is offered once more: a full ring takes none of
it again (the consumer has not run meanwhile) and a cluster refusal now raises with its
reason. Costs nothing while everything fits.
"""

from __future__ import annotations

from collections.abc import Sequence

from tickline.exchange import Exchange, ExchangeStopped, ExchangeUnavailable, Reply
from tickline.matching import Command, RejectReason
from tickline.stream.routing import ReportPort

__all__ = ["BUSY", "STOPPING", "submit_all"]

BUSY = "exchange busy: inbound queue full"
STOPPING = "server is stopping"
_THROTTLED = int(RejectReason.THROTTLED)


def submit_all(exchange: Exchange, cmds: Sequence[Command], reply: Reply,
               origin: ReportPort | None) -> tuple[int, int, str]:
    """Submit ``cmds``; returns ``(accepted, code, text)``: how many were accepted (a
    prefix), and the reject code and text for the others (:data:`BUSY` when the ring was
    full: compare with ``is``)."""
    n = 0
    while True:
        try:
            took = exchange.submit_many(cmds[n:] if n else cmds, reply, origin)
        except ExchangeUnavailable as e:  # before ExchangeStopped: it is one
            return n, e.reason, str(e)
        except ExchangeStopped:
            return n, _THROTTLED, STOPPING
        n += took
        if took == 0 or n >= len(cmds):
            return n, _THROTTLED, BUSY
