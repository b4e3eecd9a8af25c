"""The exchange loop's per-command hot path, compiled in the compiled build.

:class:`~tickline.exchange.Exchange` wires the stages (see its module doc); what runs once
per command in them lives here, so that the compiled build runs it as native code with
native calls into the compiled publisher, report builder, history and router instead of
an interpreted loop calling each of them through the generic call protocol:

* :class:`Inbound` (and :class:`HighInbound`): one accepted command waiting in the inbound
  ring (a native class: built in C by ``submit_many``, its fields read in C here);
* :func:`inbound_items`: ``submit_many``'s ring items for a read's commands;
* :func:`split_lanes`: ``submit_many``'s split of a read with cancels into the two lanes;
* :func:`stamp`: 1 SEQUENCE of one command (sequence number, strictly increasing engine time);
* :func:`sequence_run`: 1 SEQUENCE for a run of a taken batch (the common case: plain
  commands in a batch without per-command checks), without a handler call per command;
* :func:`commands_of_items`: the sequenced commands, for ``process_many``;
* :func:`match_results`: 2 MATCH's bookkeeping after ``process_many`` (pending pairs,
  the orders a session entered);
* :func:`commands_of`, :func:`publish_items`: the batch's commands for 3 JOURNAL and its
  ``(seq, ts, events)`` for the publisher;
* :func:`release`: 4 RELEASE per command: its reports built, recorded and routed, and the
  submitter's reply.

No state of its own: every function works on what the exchange passes in. Single writer:
the exchange loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

from tickline.matching.events import Accepted
from tickline.stream.history import ReportHistory
from tickline.stream.reports import ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort, ReportRouter

__all__ = ["HighInbound", "Inbound", "commands_of", "commands_of_items", "holds_back",
           "inbound_items", "match_results", "publish_items", "release", "sequence_run",
           "split_lanes", "stamp"]

log = logging.getLogger("tickline.exchange")

_Accepted: Final = Accepted

Pending = list[tuple["Inbound", list[Any]]]
"""The batch's matched commands with their events, in sequence order."""


class Inbound:
    """One accepted command waiting in the inbound ring (``make``: a command built only when
    the sequencer reaches it, from the state at that point; None = nothing to do; ``mark``,
    set for those only: how many high-lane commands had been accepted before it).
    ``cmd`` is None until ``make()`` sets it for those.

    ``seq``/``ts``: the very int objects :func:`stamp` gave ``cmd.seq``/``cmd.ts`` (0 until
    it is sequenced; a stale command is never stamped and keeps 0, as its ``cmd.seq``). The
    release path reads them here: a native field read, where ``cmd.seq`` is a generic
    attribute lookup on the command (~160 instructions) in the compiled build."""

    __slots__ = ("cmd", "make", "mark", "origin", "reply", "seq", "ts")

    def __init__(self, cmd: Any, reply: Callable[[Any, list[Any], list[ExecReport]], None]
                 | None, origin: ReportPort | None,
                 make: Callable[[], Any] | None = None) -> None:
        self.cmd: Any = cmd
        self.reply = reply
        self.origin = origin
        self.make = make
        self.seq: Any = 0
        self.ts: Any = 0

    mark: int  # set for ``make`` ones only (no per-command store on the common path)


class HighInbound(Inbound):
    """A command in the high-priority lane: its own type, so the processor dispatches it to
    a handler without the normal lane's checks (no per-command flag)."""

    __slots__ = ()


def inbound_items(cmds: Sequence[Any], reply: Callable[[Any, list[Any], list[ExecReport]],
                                                       None] | None,
                  origin: ReportPort | None, high: bool = False) -> list[Inbound]:
    """One ring item per command of ``cmds`` (:class:`HighInbound` if ``high``), all with
    the same ``reply`` and ``origin`` (one socket read's frames)."""
    if high:
        return [HighInbound(cmd, reply, origin) for cmd in cmds]
    return [Inbound(cmd, reply, origin) for cmd in cmds]


def holds_back(account: int, low_last: dict[int, int], low_head: int,
               deferred_accounts: dict[int, int]) -> bool:
    """Whether an account's own cancel must stay in the normal lane: the account has
    normal-lane work still waiting there (its ``low_last`` mark above ``low_head``, the
    lane's ring head) or deferred, and the cancel must not overtake it. The one place this
    rule is written (:meth:`tickline.exchange.Exchange._lane_of` and :func:`split_lanes`)."""
    return low_last.get(account, 0) > low_head or account in deferred_accounts


def split_lanes(cmds: Sequence[Any], flags: list[bool], own: frozenset[type],
                low_last: dict[int, int], low_head: int,
                deferred_accounts: dict[int, int]) -> tuple[list[Any], list[Any], int]:
    """``submit_many``'s split of one read into the two lanes (order kept within each):
    ``flags`` says which commands are high-lane candidates (cancels and admin commands).
    An account's own cancel (a type in ``own``) stays in the normal lane, in its place, if
    the same read has a normal-lane command of that account before it, or the account has
    normal-lane work still waiting (its ``low_last`` mark above ``low_head``, the lane's
    ring head) or deferred. Returns ``(normal, high, held_back)``: the normal lane's
    commands, the high lane's, and how many cancels were held back."""
    low: list[Any] = []
    high: list[Any] = []
    low_accounts: set[int] = set()
    held = 0
    for i, cmd in enumerate(cmds):
        if not flags[i]:
            low.append(cmd)
            low_accounts.add(getattr(cmd, "account", 0))
            continue
        if type(cmd) in own:
            account: int = cmd.account
            if account in low_accounts or holds_back(account, low_last, low_head,
                                                     deferred_accounts):
                held += 1
                low.append(cmd)
                low_accounts.add(account)
                continue
        high.append(cmd)
    return low, high, held


def stamp(cmd: Any, seq: int, last_ts: int, now: int, item: Inbound | None = None) -> int:
    """1 SEQUENCE one command: ``cmd.seq = seq`` and ``cmd.ts`` the engine time ``now``, or
    one ns past ``last_ts`` when the clock has not moved past it (engine time strictly
    increases, whatever the clock does); ``item`` (its ring item, if given) gets the same
    two int objects as ``item.seq``/``item.ts``. Returns the ``ts`` given: the caller's next
    ``last_ts``. The one place this rule is written (the exchange, the sharded exchange
    and :func:`sequence_run` call it)."""
    ts = now if now > last_ts else last_ts + 1
    seq_o: Any = seq  # boxed once (compiled), for the command and its item
    ts_o: Any = ts
    cmd.seq = seq_o
    cmd.ts = ts_o
    if item is not None:
        item.seq = seq_o
        item.ts = ts_o
    return ts


def sequence_run(items: list[Any], start: int, seq: int, last_ts: int,
                 clock: Callable[[], int], sequenced: list[Inbound]) -> tuple[int, int, int]:
    """1 SEQUENCE for ``items[start:]`` up to the first that is not a plain command
    (an :class:`Inbound` or :class:`HighInbound` with no ``make``): each gets the next
    sequence number after ``seq`` and the engine time (``clock()``, strictly increasing
    after ``last_ts``: one ns past it when the clock has not moved on), and is appended to
    ``sequenced`` (matched at the batch end). The caller has checked that the batch needs
    no per-command checks. Returns ``(stop, seq, last_ts)``: the index of the first item
    not taken (``len(items)`` if all were) and the new ``seq`` and ``last_ts``."""
    n = len(items)
    i = start
    while i < n:
        item = items[i]
        if not isinstance(item, Inbound) or item.make is not None:
            break
        seq += 1
        last_ts = stamp(item.cmd, seq, last_ts, clock(), item)
        sequenced.append(item)
        i += 1
    return i, seq, last_ts


def commands_of_items(items: list[Inbound]) -> list[Any]:
    """The commands of ``items`` (sequenced, not yet matched), for ``process_many``."""
    return [item.cmd for item in items]


def match_results(sequenced: list[Inbound], results: list[list[Any]],
                  pending: Pending) -> None:
    """Pair each sequenced command with its events (appended to ``pending``), and remember
    an accepted order as its session's own (cancel on disconnect)."""
    if len(sequenced) != len(results):
        raise ValueError(f"{len(results)} results for {len(sequenced)} commands")
    for i, item in enumerate(sequenced):
        events = results[i]
        pending.append((item, events))
        origin = item.origin
        if origin is not None and events:
            first = events[0]
            if type(first) is _Accepted:
                origin.orders.add(first.order_id)


def commands_of(pending: Pending, stale: int) -> list[Any]:
    """The commands of the batch that were sequenced (``stale``: how many were not: their
    ``seq`` is 0), for the journal."""
    if stale:
        return [item.cmd for item, _ in pending if item.cmd.seq]
    return [item.cmd for item, _ in pending]


def publish_items(pending: Pending, stale: int) -> list[tuple[Any, Any, list[Any]]]:
    """``(seq, ts, events)`` of each sequenced command of the batch, for the publisher."""
    out: list[tuple[Any, Any, list[Any]]] = []
    for item, events in pending:
        seq = item.seq  # seq, ts: the command's own int objects (``Any``), passed on as they are
        if seq or not stale:
            out.append((seq, item.ts, events))
    return out


def release(pending: Pending, reports: ReportBuilder, history: ReportHistory,
            router: ReportRouter, stale_report: Callable[[Any, Any], ExecReport]) -> int:
    """4 RELEASE, per command in sequence order: its reports (numbered), kept for resume,
    the other sessions' share routed, the submitter's own with its reply (a stale command:
    its unnumbered reject only). A failing reply is logged and the batch goes on. Returns
    the number of events released."""
    events_out = 0
    for item, events in pending:
        events_out += len(events)
        cmd = item.cmd
        try:
            seq = item.seq  # the command's own int objects (``Any``): passed on unboxed
            if seq:
                out = reports.build(seq, item.ts, events)
                history.record(out)
                own = router.route(out, getattr(cmd, "account", 0), item.origin)
            else:  # stale: its unnumbered reject, for the submitter only
                own = [stale_report(cmd, events[0])]
            reply = item.reply
            if reply is not None:
                reply(cmd, events, own)
        except Exception:  # a broken session must not stop the exchange
            log.exception("report delivery failed for seq %d", cmd.seq)
    return events_out
