"""The cluster gateway's per-command work, compiled in the compiled build.

:class:`~tickline.cluster.gateway.ClusterExchange` wires the stages (see its module doc);
what runs once per command in them lives here, so that the compiled build runs it as native
code with native calls into the compiled report builder, history and router, as
:mod:`tickline.loop` does for the one-process exchange:

* :class:`Wait` and :class:`Batch`: one submission waiting for its release, and one input
  message (a batch of a shard's commands) until all of it is released (native classes:
  built and read in C here);
* :func:`waits_for`: ``submit_many``'s waits for one socket read's commands;
* :func:`commands`, :func:`ticket`: the publisher's commands and tickets for one batch's
  waits;
* :func:`unseen`, :func:`publish_items`: an output message's commands not yet applied, and
  their ``(seq, ts, events)`` for the market-data publisher;
* :func:`release`: per command of an output message, its reports built, recorded and
  routed, and the submitter answered when it is the oldest submission waiting (else its
  results are kept on its wait for the in-order release).

An output message's commands arrive here as the rows of
:data:`~tickline.cluster.wire.decode_output_rows` (``(gateway, ticket, cmd, events)``
tuples: the same bytes as :class:`~tickline.cluster.wire.Done`, cheaper to build and to
read). No state of its own: every function works on what the gateway passes in. Single
writer: the gateway's event loop.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tickline.stream.history import ReportHistory
from tickline.stream.reports import ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort, ReportRouter

__all__ = ["Batch", "Row", "Wait", "answer", "commands", "publish_items", "release", "ticket",
           "unseen", "waits_for"]

log = logging.getLogger("tickline.cluster.gateway")

Row = tuple[str, int, Any, list[Any]]
"""One command of an output message: ``(gateway, ticket, cmd, events)``."""

_NONE: list[Any] = []
"""A wait's events and reports until it is released (shared, never appended to)."""


class Batch:
    """One input message: commands of one shard taken in one loop turn, tickets
    ``ticket .. last``; re-sent whole (same bytes, same ``Nats-Msg-Id``) when lost."""

    __slots__ = ("first_sent", "last", "left", "msg_id", "payload", "sent", "shard",
                 "ticket")

    def __init__(self, ticket: int, last: int, shard: int, payload: bytes,
                 msg_id: str) -> None:
        self.ticket = ticket
        self.last = last
        self.left = last - ticket + 1
        self.shard = shard
        self.payload = payload
        self.msg_id = msg_id
        self.sent = time.monotonic()
        self.first_sent = self.sent


class Wait:
    """One submission waiting for its release (a command, a query or a deferred make).
    A command's ``ticket`` is given when it is batched for publishing (0 before)."""

    __slots__ = ("ask", "batch", "cmd", "done", "events", "make", "origin", "reply",
                 "reports", "shard", "ticket")

    def __init__(self, ticket: int, cmd: Any, reply: Any, origin: ReportPort | None) -> None:
        self.ticket = ticket
        self.cmd: Any = cmd
        self.reply: Any = reply
        self.origin = origin
        self.shard = 0
        self.done = False
        self.events: list[Any] = _NONE  # set when released (not on the fast path)
        self.reports: list[ExecReport] = _NONE
        self.ask: Callable[[], Any] | None = None
        self.make: Callable[[], Any] | None = None
        self.batch: Batch | None = None


def waits_for(cmds: Sequence[Any], reply: Any, origin: ReportPort | None,
              order: deque[Wait], to_publish: list[Wait]) -> None:
    """One wait per command of ``cmds`` (shard 0, all with ``reply`` and ``origin``),
    appended to the release order and to what the publisher takes next."""
    for cmd in cmds:
        w = Wait(0, cmd, reply, origin)
        order.append(w)
        to_publish.append(w)


def commands(waits: list[Wait]) -> list[Any]:
    """The commands of ``waits`` (one batch's, in order), for its input message."""
    return [w.cmd for w in waits]


def ticket(waits: list[Wait], first: int, batch: Batch, mine: dict[int, Wait]) -> None:
    """Give ``waits`` (one batch's, in order) the tickets ``first, first + 1, ...``: each
    is this gateway's, findable by ticket when its output comes back."""
    t = first
    for w in waits:
        w.ticket = t
        w.batch = batch
        mine[t] = w
        t += 1


def unseen(rows: list[Row], applied: int) -> list[Row]:
    """The rows whose command sequence is past ``applied`` (a takeover re-publishes what
    a gateway may already have: those are dropped; the rows are in sequence order)."""
    if not rows or rows[0][2].seq > applied:
        return rows
    return [r for r in rows if r[2].seq > applied]


def publish_items(rows: list[Row]) -> list[tuple[Any, Any, list[Any]]]:
    """``(seq, ts, events)`` of each row, for the market-data publisher (the command's own
    int objects passed on: compiled, an ``int`` here would be unboxed and boxed again)."""
    out: list[tuple[Any, Any, list[Any]]] = []
    for r in rows:
        cmd = r[2]
        out.append((cmd.seq, cmd.ts, r[3]))
    return out


def answer(w: Wait, cmd: Any, events: list[Any], reports: list[ExecReport]) -> None:
    """Call a released submission's reply (a failing one is logged, the release goes on)."""
    reply = w.reply
    if reply is not None:
        try:
            reply(cmd, events, reports)
        except Exception:
            log.exception("reply failed for ticket %d", w.ticket)


def release(rows: list[Row], gateway: str, mine: dict[int, Wait], order: deque[Wait],
            batches: dict[int, Batch], reports: ReportBuilder, history: ReportHistory,
            router: ReportRouter, released: int) -> tuple[int, int]:
    """Release one output message's unseen ``rows``, in sequence order: each command's
    reports are built (numbered) and kept for resume; another gateway's command (or one
    re-published after a takeover) is only routed; this gateway's (``gateway``, found by
    ticket in ``mine``) is routed with its origin, counted off its batch, and answered at
    once when it is the oldest submission waiting (``order[0]``), else its results wait
    on it for the in-order release. Returns ``(highest ticket of ours released, how many
    were answered)``; ``released`` is the highest before."""
    answered = 0
    for row in rows:
        cmd = row[2]
        events = row[3]
        seq = cmd.seq  # Any: the int object passed on as it is (see publish_items)
        out = reports.build(seq, cmd.ts, events)
        history.record(out)
        w = mine.pop(row[1], None) if row[0] == gateway else None
        if w is None:  # another gateway's command (or one re-published): route only
            try:
                router.route(out, getattr(cmd, "account", 0), None)
            except Exception:
                log.exception("report delivery failed for seq %d", seq)
            continue
        if w.ticket > released:
            released = w.ticket
        b = w.batch
        if b is not None:
            b.left -= 1
            if not b.left:
                del batches[b.ticket]
        own: list[ExecReport]
        try:
            own = router.route(out, getattr(cmd, "account", 0), w.origin)
        except Exception:
            log.exception("report delivery failed for seq %d", seq)
            own = []
        if order and order[0] is w:
            # The oldest submission waiting: answer it now (what the one-process loop
            # does per command), without storing the results on the wait.
            order.popleft()
            answered += 1
            answer(w, cmd, events, own)
            continue
        w.cmd = cmd
        w.events = events
        w.reports = own
        w.done = True
    return released, answered
