"""The exchange loop: sequencer → matching engine → journal → publishers, in one place.

Every command a gateway accepts goes through four named stages, one natural batch at a time,
on the :class:`~tickline.core.processor.EventProcessor` (one consumer, a bounded inbound
ring, backpressure ``reject``)::

    submit() ─► [inbound ring] ─► 1 SEQUENCE ─► 2 MATCH ─┐   per command, as the batch is taken
                                                          │
                        batch end ◄───────────────────────┘
                            │
                            ├─► 3 JOURNAL  append the batch, commit (durability policy)
                            └─► 4 RELEASE  market data, then per command: its execution
                                           reports (numbered per account), the other
                                           sessions' share through the router, and the
                                           submitter's reply — only after stage 3

1. **SEQUENCE** stamps the next sequence number and the engine time (wall-clock ns, strictly
   increasing: one ns past the previous command's when the wall clock has not moved on, so
   ``ts`` identifies a command) on the command.
2. **MATCH** applies it to the deterministic :class:`~tickline.matching.MatchingEngine`; the
   events are held back.
3. **JOURNAL** appends every sequenced command of the batch (rejected ones too, so a replay
   reproduces every event byte for byte) and commits once. With durability ``batch`` the
   batch is on disk before anything is released. Matching before journaling is safe because
   nothing leaves the process before the commit: a crash in between loses only commands
   nobody was told about, and recovery rebuilds exactly the journaled state. A journal error
   is fatal (the exchange stops rather than acknowledge what it could not record).
4. **RELEASE** publishes the batch's market data on the bus; then, command by command, the
   :class:`~tickline.stream.ReportBuilder` turns its events into execution reports (each
   numbered with its account's report sequence number), the
   :class:`~tickline.stream.ReportRouter` delivers the reports for other sessions (a resting
   maker's fill, an expiry) and returns the submitting account's own, and the submitter's
   ``reply(cmd, events, reports)`` gets those. No gateway re-derives a report.

**Lanes.** The inbound processor has two lanes: cancels, mass cancels and admin commands
(:data:`HIGH_PRIORITY`) in lane 0, served first, new orders, replaces and the rest in lane 1,
served at least every ``starvation_bound`` batches. Sequence numbers are stamped as commands
are *taken*, so the journal records the order actually matched and replay is unchanged. Per
account, the order of submission is kept: an account's cancel stays in lane 1 while the same
account has commands waiting there (*held back*: it never overtakes its own new order), and
a lane-1 command taken ahead of an earlier lane-0 command of its account (or an earlier
trading-status change; for queries and deferred commands, any earlier lane-0 command) is
*deferred* and sequenced right after it. So each session's replies keep their order.

**Deadlines.** *Firm*: a new order or replace that waited in the ring longer than
``max_queue_ms`` is answered ``STALE_ORDER`` (410) and never sequenced, matched or journaled
(its reject carries report number 0, so the account's numbering stays gap-free and a replay
equal). *Hard*: a batch whose match stage exceeds ``match_deadline_ms`` is counted and
logged. *Soft*: a release stage over ``publish_deadline_ms`` is counted and its lateness
recorded. The checks cost one comparison per batch while nothing is late (the late commands
of a batch are a prefix: enqueue times are non-decreasing).

GTD expiry needs engine time to move when no orders arrive: :meth:`Exchange.run` submits a
:class:`~tickline.matching.TimeTick` when the earliest expiry is due (a timer armed for that
instant, not a polling loop). Snapshots are taken every ``snapshot_every`` commands: the state
is copied between batches, and written (encode, temp file, fsyncs, rename) on a background
thread, so a big book does not stall the loop. A snapshot that cannot be written (a full
disk) is logged, counted in ``snapshots_failed`` and leaves no file behind; the exchange
keeps running, reported *degraded* (:attr:`Exchange.snapshot_error`) until a later snapshot
succeeds. It never stops shutdown: the journal, not the snapshot, is the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric

from tickline.core.metrics import (
    FamiliesCollector,
    LatencyRecorder,
    exposition,
    metric_families,
    processor_families,
)
from tickline.core.processor import EventProcessor, ProcessorFull
from tickline.journal import DirectoryLock, Journal, RecoveryReport, recover
from tickline.loop import (
    HighInbound,
    Inbound,
    commands_of,
    commands_of_items,
    holds_back,
    inbound_items,
    match_results,
    publish_items,
    release,
    sequence_run,
    split_lanes,
    stamp,
)
from tickline.matching import (
    Cancel,
    CancelOrders,
    Command,
    EngineConfig,
    Event,
    Instrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    SetAccountStatus,
    SetTradingStatus,
    TimeTick,
)
from tickline.resume import Resumer
from tickline.stream import Bus, MarketDataPublisher
from tickline.stream.history import ReportHistory
from tickline.stream.reports import ExecKind, ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort, ReportRouter

log = logging.getLogger(__name__)

Reply = Callable[[Command, list[Event], list[ExecReport]], None]
"""``reply(cmd, events, reports)``: the command as sequenced, its engine events, and its
execution reports for the submitting account (report-sequence order)."""


class ExchangeBusy(Exception):
    """The inbound ring is full: the command was not accepted (backpressure ``reject``)."""


class ExchangeStopped(Exception):
    """The exchange is stopping or has stopped and accepts nothing more."""


class ExchangeUnavailable(ExchangeStopped):
    """The exchange cannot take the command now, nothing was logged, and it is not
    stopping: ``reason`` is the typed reject code every gateway answers with, ``str()`` the
    why (cluster mode with no engine leader: ``CLUSTER_UNAVAILABLE``). A subclass of
    :class:`ExchangeStopped`, so code that only knows that one still refuses the command."""

    reason: int = 0


HIGH_PRIORITY: frozenset[type] = frozenset(
    {Cancel, MassCancel, CancelOrders, SetTradingStatus, SetAccountStatus})
"""Command types that travel in the high-priority inbound lane (cancels and admin commands);
everything else (new orders, replaces, time ticks, deferred commands, queries) in the
normal one."""
_OWN_CANCELS: frozenset[type] = frozenset({Cancel, MassCancel, CancelOrders})
"""High-priority commands an account sends about its own orders: held back in the normal
lane while the same account has commands waiting there (they never overtake them)."""
_FIRM = (NewOrder, Replace)
"""Command types under the firm ``max_queue_ms`` deadline (a late cancel is still wanted)."""
_STALE = int(RejectReason.STALE_ORDER)
_EXEC_REJECTED = int(ExecKind.REJECTED)
_IS_HIGH = HIGH_PRIORITY.__contains__
_ACCOUNT = attrgetter("account")
_NEVER = 1 << 62  # a disabled deadline (ns): no comparison ever exceeds it


_Inbound = Inbound
"""One accepted command waiting in the inbound ring (:class:`tickline.loop.Inbound`)."""
_HighInbound = HighInbound
"""A command in the high-priority lane (:class:`tickline.loop.HighInbound`)."""


class _Query:
    """A read-only question about the released state, answered in sequence (``after``: how
    many commands of its batch came before it)."""

    __slots__ = ("after", "ask", "mark", "reply")

    def __init__(self, ask: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        self.ask = ask
        self.reply = reply
        self.after = 0
        self.mark = 0  # high-lane commands accepted before it (answered after all of them)


class Exchange:
    """A running exchange: one engine, its journal, its market-data publisher.

    Single consumer: :meth:`run` (an asyncio task) or :meth:`pump` (tests, tools) drives the
    stages; :meth:`submit` may be called from the same event loop by any number of gateway
    sessions. ``journal_dir=None`` runs without a journal (tests, benchmarks of the other
    stages only).
    """

    def __init__(
        self,
        instruments: Iterable[Instrument],
        *,
        engine_config: EngineConfig | None = None,
        journal_dir: Path | str | None = None,
        durability: str = "batch",
        interval_ms: int = 5,
        segment_bytes: int = 64 << 20,
        snapshot_every: int = 0,
        bus: Bus | None = None,
        capacity: int = 65536,
        max_batch: int = 1024,
        clock: Callable[[], int] = time.time_ns,
        report_history: int = 4096,
        lanes: bool = True,
        starvation_bound: int = 8,
        high_capacity: int = 4096,
        max_queue_ms: float = 1000.0,
        match_deadline_ms: float = 100.0,
        publish_deadline_ms: float = 200.0,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.instruments = list(instruments)
        self.engine_config = engine_config or EngineConfig()
        self.recovery: RecoveryReport | None = None
        self.journal: Journal | None = None
        self.reports = ReportBuilder()
        """Numbers and builds every command's execution reports (restored on recovery)."""
        self.router = ReportRouter()
        """Delivers reports to the sessions of their accounts; every gateway attaches here."""
        self.history = ReportHistory(report_history)
        """Each account's most recent reports (``report_history`` deep), for resume."""
        self.resumer = Resumer(self.history,
                               Path(journal_dir) if journal_dir is not None else None)
        if journal_dir is not None:
            journal_dir = Path(journal_dir)
            # One writer per journal: the lock is taken before recovery (which may truncate
            # a torn tail) and handed to the journal, which holds it until close.
            lock = DirectoryLock.acquire(journal_dir)
            try:
                self.engine, self.recovery = recover(journal_dir, self.instruments,
                                                     self.engine_config, lock=lock,
                                                     followers=[self.reports])
                self.journal = Journal.open(journal_dir, durability=durability,
                                            interval_ms=interval_ms,
                                            segment_bytes=segment_bytes,
                                            instruments=self.instruments,
                                            config=self.engine_config, lock=lock)
            except BaseException:
                lock.release()
                raise
        else:
            self.engine = MatchingEngine(self.instruments, self.engine_config)
        self.bus = bus if bus is not None else Bus()
        self.publisher = MarketDataPublisher(self.bus, self.instruments,
                                             books=self.engine.books)
        self.snapshot_every = snapshot_every
        self._clock = clock
        self._seq = self.engine.last_seq
        self._last_ts = self.engine.now
        self._since_snapshot = 0
        self._pending: list[tuple[_Inbound, list[Event]]] = []
        self._sequenced: list[_Inbound] = []  # sequenced, not yet matched (see _match)
        self._queries: deque[_Query] = deque()
        self._stopping = False
        self.failure: BaseException | None = None
        """The journal error that stopped the exchange (None while healthy)."""
        self._wakeup: asyncio.TimerHandle | None = None
        self._snapshot_pool: ThreadPoolExecutor | None = None
        self._snapshot_future: Future[Path] | None = None
        # Snapshot counters: ``snapshots`` counts snapshots *written* (file renamed into
        # place), ``snapshots_failed`` those whose write failed, ``snapshots_skipped`` those
        # not started because the previous one was still being written. The first two and
        # ``snapshot_error`` are written by the snapshot thread only (one worker).
        self.snapshots = 0
        self.snapshots_failed = 0
        self.snapshots_skipped = 0
        self.snapshot_error: str | None = None
        """Why the most recent snapshot failed; ``None`` once one succeeds again."""
        # Priority lanes: 0 = cancels and admin commands (``high_capacity`` slots: a ring's
        # slots cost every full GC pass a visit, and cancels drain first), 1 = the rest
        # (``lanes=False``: one lane, 0, for everything). Deadlines in ns (0 ms = off).
        own_stage = (type(self)._sequence_and_match is Exchange._sequence_and_match
                     and type(self)._sequence_high is Exchange._sequence_high)
        if type(self)._sequence_and_match is not Exchange._sequence_and_match:
            # A subclass with its own per-command stage (sharded, cluster) has none of the
            # checks that keep per-account order across lanes: one lane for it.
            lanes = False
        self.lanes = lanes
        self._low = 1 if lanes else 0
        self._mono = monotonic
        self.max_queue_ns = int(max_queue_ms * 1e6) if max_queue_ms > 0 else 0
        self.match_deadline_ns = int(match_deadline_ms * 1e6) if match_deadline_ms > 0 else _NEVER
        self.publish_deadline_ns = (int(publish_deadline_ms * 1e6) if publish_deadline_ms > 0
                                    else _NEVER)
        self.processor: EventProcessor[_Inbound | _Query] = EventProcessor(
            name="exchange", capacity=(min(high_capacity, capacity), capacity) if lanes
            else capacity, max_batch=max_batch, policy="reject",
            clock=monotonic, batch_end=self._end_of_batch, batch_start=self._start_of_batch,
            lanes=2 if lanes else 1, starvation_bound=starvation_bound, combine_lanes=True,
            # 1 SEQUENCE of a taken run in one call (a subclass's own stage: per command)
            batch_dispatch=self._sequence_part if own_stage else None,
        )
        self.processor.register(_Inbound, self._sequence_and_match)
        self.processor.register(_HighInbound, self._sequence_high)
        self.processor.register(_Query, self._ask)
        self._high_lane = self.processor.lane(0)
        self._low_lane = self.processor.lane(self._low)
        # Per-account order across the lanes (all producer-side marks are lane positions,
        # ``Lane.published`` after the submit; a command is still waiting while its mark is
        # above the lane's ``ring.head``). See :meth:`_lane_of` and :meth:`_must_wait`.
        self._low_last: dict[int, int] = {}  # account -> end of its last normal-lane command
        self._high_last: dict[int, int] = {}  # account -> end of its last high-lane command
        self._high_all = 0  # end of the last high-lane command that concerns every account
        self._deferred: deque[tuple[_Inbound | _Query, bool]] = deque()
        self._deferred_accounts: dict[int, int] = {}
        # Per-batch state set by _start_of_batch (consumer only).
        self._slow = False  # this batch needs the per-command checks below
        self._stale_left = 0  # commands at the head of the batch past max_queue_ms
        self._guard = False  # the other lane holds work this batch must not overtake
        self._stale_in_batch = 0
        # Stage timings, one sample per batch (ns); written by the consumer only.
        self.stage_match = LatencyRecorder("match_ns")
        self.stage_journal = LatencyRecorder("journal_ns")
        self.stage_publish = LatencyRecorder("publish_ns")
        self.publish_lateness = LatencyRecorder("publish_lateness_ns")
        self.commands = 0
        self.events = 0
        self.stale_orders = 0
        """New orders and replaces rejected ``STALE_ORDER`` (firm deadline)."""
        self.held_back = 0
        """Cancels kept in the normal lane behind the same account's earlier commands."""
        self.deferred = 0
        """Normal-lane commands taken ahead of an earlier high-lane one they must follow
        (starvation bound) and sequenced right after it instead."""
        self.match_misses = 0
        self._match_logged = 0
        """Batches whose match stage exceeded ``match_deadline_ms`` (hard: logged)."""
        self.publish_misses = 0
        """Batches whose release stage exceeded ``publish_deadline_ms`` (soft)."""
        self._batch_started = 0

    # -- producer side ------------------------------------------------------------------

    def submit(self, cmd: Command, reply: Reply | None = None,
               origin: ReportPort | None = None) -> None:
        """Accept ``cmd`` for sequencing; ``reply(cmd, events, reports)`` is called once its
        batch is journaled. ``origin`` is the submitting session's router port: the orders
        it enters are remembered as its own, so later reports about them (fills as a maker,
        expiry) reach it. Raises :class:`ExchangeBusy` when the inbound ring is full and
        :class:`ExchangeStopped` once stopping. The command's ``seq``/``ts`` are overwritten
        by the sequencer."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        lane = self._lane_of(cmd) if self.lanes else 0
        item = _HighInbound(cmd, reply, origin) if self.lanes and not lane else _Inbound(
            cmd, reply, origin)
        try:
            self.processor.submit(item, lane=lane)
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None
        if lane:
            self._low_last[getattr(cmd, "account", 0)] = self._low_lane.published
        elif self.lanes:
            self._mark_high(cmd)

    def _lane_of(self, cmd: Command) -> int:
        """The lane for ``cmd``: 0 for cancels and admin commands, 1 for the rest — but an
        account's own cancel stays in lane 1 while that account has commands waiting there
        (or deferred), so it never overtakes its own earlier new order or replace."""
        t = type(cmd)
        if t not in HIGH_PRIORITY:
            return 1
        if t in _OWN_CANCELS:
            account: int = cmd.account  # type: ignore[union-attr]
            if holds_back(account, self._low_last, self._low_lane.ring.head,
                          self._deferred_accounts):
                self.held_back += 1
                return 1
        return 0

    def _mark_high(self, cmd: Command) -> None:
        """Remember where the high-lane command just accepted ends: normal-lane commands of
        its account (of every account, for a trading-status change) must not be sequenced
        before it (see :meth:`_must_wait`)."""
        end = self._high_lane.published
        account = getattr(cmd, "account", None)
        if account is None:
            self._high_all = end
        else:
            self._high_last[account] = end

    def submit_many(self, cmds: Sequence[Command], reply: Reply | None = None,
                    origin: ReportPort | None = None) -> int:
        """Accept several commands at once (e.g. every frame of one socket read): one ring
        operation and one enqueue timestamp for all of them. Returns how many were accepted
        — a prefix of ``cmds``; the rest met a full ring (the caller rejects them as busy).
        Raises :class:`ExchangeStopped` once stopping."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        if not self.lanes:
            try:
                return self.processor.submit_many(inbound_items(cmds, reply, origin))
            except ProcessorFull:
                return 0
        flags = list(map(_IS_HIGH, map(type, cmds)))  # C loops: no bytecode per command
        if any(flags):
            return self._submit_mixed(cmds, flags, reply, origin)
        # The common case: nothing for the high lane, one ring operation.
        try:
            n = self.processor.submit_many(inbound_items(cmds, reply, origin), lane=1)
        except ProcessorFull:
            return 0
        self._mark_low(cmds[:n] if n < len(cmds) else cmds)
        return n

    def _mark_low(self, cmds: Sequence[Command]) -> None:
        """Remember that each command's account has normal-lane work up to the lane's end
        (for :meth:`_lane_of`); one C-level dict update for all of them."""
        end = self._low_lane.published
        try:
            self._low_last.update(zip(map(_ACCOUNT, cmds), repeat(end)))
        except AttributeError:  # a command without an account (a time tick) among them
            for cmd in cmds:
                self._low_last[getattr(cmd, "account", 0)] = end

    def _submit_mixed(self, cmds: Sequence[Command], flags: list[bool], reply: Reply | None,
                      origin: ReportPort | None) -> int:
        """:meth:`submit_many` for a read with cancels or admin commands in it (``flags``:
        which): split it into the two lanes (order kept within each) and submit each part
        with one ring operation (:func:`~tickline.loop.split_lanes`). An account's cancel
        stays in the normal lane, in its place, if :meth:`_lane_of` would say so or the same
        read has a normal-lane command of that account before it. If either part does not
        fit whole, one command at a time instead, stopping at the first that does not fit
        (the accepted ones a prefix)."""
        low_cmds, high_cmds, held = split_lanes(cmds, flags, _OWN_CANCELS, self._low_last,
                                                self._low_lane.ring.head,
                                                self._deferred_accounts)
        self.held_back += held
        if (self._high_lane.ring.free() < len(high_cmds)
                or self._low_lane.ring.free() < len(low_cmds)):
            for i, cmd in enumerate(cmds):
                try:
                    self.submit(cmd, reply, origin)
                except ExchangeBusy:
                    return i
            return len(cmds)
        processor = self.processor
        try:
            if low_cmds:
                processor.submit_many(inbound_items(low_cmds, reply, origin), lane=1)
            if high_cmds:
                processor.submit_many(inbound_items(high_cmds, reply, origin, True), lane=0)
        except ProcessorFull:  # pragma: no cover - room was checked on this thread
            return 0
        self._mark_low(low_cmds)
        for cmd in high_cmds:
            self._mark_high(cmd)
        return len(cmds)

    def submit_deferred(self, make: Callable[[], Command | None], reply: Reply | None = None,
                        origin: ReportPort | None = None) -> None:
        """Accept a command that ``make()`` builds when the sequencer reaches it, from the
        state at that point (e.g. cancel on disconnect: the session's orders still live
        once everything it sent before has been matched); ``make()`` returning None
        submits nothing. Raises like :meth:`submit`."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        item = _Inbound(None, reply, origin, make)
        item.mark = self._high_lane.published
        try:
            self.processor.submit(item, lane=self._low)
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None

    def submit_deferred_cancel(self, account: int,
                               make: Callable[[], Command | None]) -> None:
        """:meth:`submit_deferred` for a cancel of ``account``'s own orders that ``make()``
        builds (cancel on disconnect): in the high-priority lane like any cancel, so a flood
        of new orders filling the normal lane cannot keep it out (held back in the normal
        lane while the account has commands waiting there, as :meth:`_lane_of` does).
        One lane (``lanes=False``, sharded, cluster): :meth:`submit_deferred`. Raises like
        :meth:`submit`."""
        if not self.lanes:
            self.submit_deferred(make)
            return
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        like = CancelOrders(account=account, order_ids=())
        lane = self._lane_of(like)
        item = (_Inbound if lane else _HighInbound)(None, None, None, make)
        item.mark = self._high_lane.published
        try:
            self.processor.submit(item, lane=lane)
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None
        if lane == 0:
            self._mark_high(like)

    def query(self, ask: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        """Ask a read-only question in sequence: ``ask()`` runs in the RELEASE stage right
        after every command submitted before it (by anyone) has been journaled and its
        reports built, and before any later command is released, so what it reads of the
        report builder (:attr:`reports`: order state, open orders) is exact at its place;
        then ``reply(answer)``. (The engine itself may be ahead by the rest of the batch.)
        Not sequenced, not journaled. Raises like :meth:`submit`."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        item = _Query(ask, reply)
        item.mark = self._high_lane.published
        try:
            self.processor.submit(item, lane=self._low)
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None

    # -- stages 1 and 2 (per command) ---------------------------------------------------

    def _start_of_batch(self, lane: int, segs: list[tuple[int, int]], taken: int) -> None:
        """Before a batch is dispatched: start the match-stage clock, and decide whether its
        commands need the per-command checks (one comparison each otherwise): a prefix past
        the firm ``max_queue_ms`` deadline (enqueue times are non-decreasing, so the late
        ones are a prefix), or, in the normal lane, high-lane work it must not overtake."""
        self._batch_started = taken
        if lane != self._low:
            return  # (the flags below were reset at the last batch end)
        stale = 0
        limit = taken - self.max_queue_ns
        if self.max_queue_ns and segs[0][1] < limit:
            for count, enqueued in segs:
                if enqueued >= limit:
                    break
                stale += count
        self._stale_left = stale
        high = self._high_lane.ring
        self._guard = guard = self.lanes and (high.tail != high.head or bool(self._deferred))
        self._slow = stale > 0 or guard

    def _intercept(self, item: _Inbound | _Query) -> bool:
        """The per-command checks of a flagged batch; True if ``item`` was taken care of
        here: deferred behind high-lane work it must follow, or rejected as stale."""
        stale = False
        if self._stale_left:
            self._stale_left -= 1
            stale = type(item) is _Inbound and item.make is None and isinstance(item.cmd,
                                                                                 _FIRM)
        if self._guard and (self._deferred or self._must_wait(item)):
            self._defer(item, stale)
            return True
        if stale:
            self._reject_stale(item)  # type: ignore[arg-type]  # stale: an _Inbound
            return True
        return False

    def _must_wait(self, item: _Inbound | _Query) -> bool:
        """True if a high-lane command that ``item`` must follow is still waiting: for a
        command, its account's (or a trading-status change), accepted before it; for a query
        or a deferred command, any accepted before it."""
        head = self._high_lane.ring.head
        if isinstance(item, _Query) or item.make is not None:
            return item.mark > head
        if self._high_all > head:
            return True
        return self._high_last.get(getattr(item.cmd, "account", 0), 0) > head

    def _defer(self, item: _Inbound | _Query, stale: bool) -> None:
        self.deferred += 1
        self._deferred.append((item, stale))
        if type(item) is _Inbound and item.make is None:
            account = getattr(item.cmd, "account", 0)
            self._deferred_accounts[account] = self._deferred_accounts.get(account, 0) + 1

    def _release_deferred(self) -> None:
        """Sequence the deferred commands (in the order they were taken) whose high-lane
        predecessors have now been taken; stop at the first that must still wait."""
        deferred = self._deferred
        self._slow = False
        while deferred and not self._must_wait(deferred[0][0]):
            item, stale = deferred.popleft()
            if type(item) is _Query:
                self._ask(item)
                continue
            assert isinstance(item, _Inbound)
            if item.make is None:
                account = getattr(item.cmd, "account", 0)
                left = self._deferred_accounts[account] - 1
                if left:
                    self._deferred_accounts[account] = left
                else:
                    del self._deferred_accounts[account]
            if stale:
                self._reject_stale(item)
            else:
                self._sequence_and_match(item)

    def _reject_stale(self, item: _Inbound) -> None:
        """Firm deadline: answer ``item`` (a new order or replace that waited too long) with
        ``STALE_ORDER``, in its place among the batch's replies. It is not sequenced
        (``seq`` stays 0), matched, journaled or numbered: a replay never sees it, and the
        account's report numbers stay gap-free."""
        self._match()  # the commands sequenced before it reply before it
        cmd = item.cmd
        cmd.seq = 0
        self.stale_orders += 1
        self._stale_in_batch += 1
        order_id = cmd.order_id if type(cmd) is Replace else 0
        self._pending.append((item, [Rejected(
            cmd.account, cmd.client_order_id, cmd.symbol, order_id, _STALE,
            f"waited longer than max_queue_ms={self.max_queue_ns / 1e6:g} in the inbound "
            f"queue")]))

    def _ask(self, item: _Query) -> None:
        if self._slow and self._intercept(item):
            return
        item.after = len(self._pending) + len(self._sequenced)
        self._queries.append(item)

    def _sequence_part(self, items: list[_Inbound | _Query],
                       segs: list[tuple[int, int]]) -> None:
        """The processor's dispatch of one taken part of a batch: with no per-command checks
        to make (``_slow`` unset), 1 SEQUENCE of its plain commands in runs
        (:func:`~tickline.loop.sequence_run`: what :meth:`_sequence_and_match` does for one,
        without a handler call each); the rest (queries, deferred commands, a flagged
        batch's commands) through the handler table, one at a time, in their place."""
        if self._slow:
            self.processor.dispatch_each(items, segs)
            return
        n = len(items)
        i = 0
        sequenced = self._sequenced
        clock = self._clock
        while True:
            i, self._seq, self._last_ts = sequence_run(items, i, self._seq, self._last_ts,
                                                       clock, sequenced)
            if i >= n:
                return
            self.processor.dispatch_each(items[i:i + 1], segs)
            i += 1

    def _sequence_high(self, item: _HighInbound) -> None:
        """A high-lane command: never stale, never deferred."""
        if self._slow:  # the flags are the normal lane's part of this batch
            self._slow = False
            self._sequence_and_match(item)
            self._slow = True
        else:
            self._sequence_and_match(item)

    def _sequence_and_match(self, item: _Inbound) -> None:
        if self._slow and self._intercept(item):
            return
        if item.make is not None:
            self._match()  # make() reads the state after everything before it
            made = item.make()
            if made is None:
                return
            item.cmd = made
        cmd = item.cmd
        # 1 SEQUENCE
        self._seq += 1
        self._last_ts = stamp(cmd, self._seq, self._last_ts, self._clock(), item)
        self._sequenced.append(item)  # 2 MATCH: for the whole batch at once, in _match

    def _match(self) -> None:
        """2 MATCH the commands sequenced since the last call, with one
        :meth:`~tickline.matching.MatchingEngine.process_many` (the engine's per-call cost
        once per batch). Runs at the end of every batch, and before a deferred command is
        made (it reads the state after everything before it). An engine exception is an
        engine bug: it propagates and stops the loop, and nothing of the batch is journaled
        or acknowledged (recovery replays the journal to the state before it)."""
        sequenced = self._sequenced
        if not sequenced:
            return
        try:
            results = self.engine.process_many(commands_of_items(sequenced))
        except BaseException as exc:
            self.failure = exc
            self._stopping = True
            log.critical("the matching engine failed; the exchange stops", exc_info=exc)
            raise
        # pairs in _pending; an accepted order is its session's own (cancel on disconnect)
        match_results(sequenced, results, self._pending)
        sequenced.clear()

    # -- stages 3 and 4 (per batch) -----------------------------------------------------

    def _end_of_batch(self, n: int) -> None:
        if self._deferred:
            self._release_deferred()
        self._match()
        pending = self._pending
        if not pending:
            self._slow = False
            self._stale_left = 0
            self._guard = False
            while self._queries:
                self._answer(self._queries.popleft())
            return
        t1 = self._mono()
        match_ns = t1 - self._batch_started
        self.stage_match.record(match_ns)
        if match_ns > self.match_deadline_ns:
            self._match_missed(match_ns, len(pending))
        stale = self._stale_in_batch
        # 3 JOURNAL
        journal = self.journal
        if journal is not None:
            try:
                journal.append_many(commands_of(pending, stale))
                journal.commit()
            except BaseException as exc:
                # Fatal: nothing of this batch is released, and nothing more is accepted
                # (submitters get ExchangeStopped instead of waiting for a dead loop).
                self.failure = exc
                self._stopping = True
                log.critical("journal failed; the exchange stops", exc_info=exc)
                raise
        t2 = self._mono()
        self.stage_journal.record(t2 - t1)
        # 4 RELEASE: market data for the whole batch at once (one publish per topic
        # touched); then per command, in sequence order: its reports, the other sessions'
        # share through the router, the submitter's own with its reply.
        self.publisher.publish_batch(publish_items(pending, stale))
        queries = self._queries
        if not queries:
            events_out = release(pending, self.reports, self.history, self.router,
                                 self._stale_report)
        else:
            events_out = self._release_with_queries(pending, queries)
        self._publish_took(self._mono() - t2)
        self._slow = False
        self._stale_left = 0
        self._guard = False
        done_cmds = len(pending) - stale
        self.commands += done_cmds
        self.events += events_out
        self._since_snapshot += done_cmds
        self._stale_in_batch = 0
        pending.clear()
        while queries:
            self._answer(queries.popleft())
        if self.snapshot_every and self._since_snapshot >= self.snapshot_every:
            self.snapshot(wait=False)

    def _release_with_queries(self, pending: list[tuple[_Inbound, list[Event]]],
                              queries: deque[_Query]) -> int:
        """4 RELEASE (see :func:`tickline.loop.release`) with queries among the batch: each
        answered in its place, after the commands submitted before it."""
        events_out = 0
        build = self.reports.build
        route = self.router.route
        record = self.history.record
        for done, (item, events) in enumerate(pending):
            while queries and queries[0].after == done:
                self._answer(queries.popleft())
            events_out += len(events)
            cmd = item.cmd
            try:
                if cmd.seq:
                    reports = build(cmd.seq, cmd.ts, events)
                    record(reports)
                    own = route(reports, getattr(cmd, "account", 0), item.origin)
                else:  # stale: its unnumbered reject, for the submitter only
                    own = [self._stale_report(cmd, events[0])]  # type: ignore[arg-type]
                if item.reply is not None:
                    item.reply(cmd, events, own)
            except Exception:  # a broken session must not stop the exchange
                log.exception("report delivery failed for seq %d", cmd.seq)
        return events_out

    def _match_missed(self, match_ns: int, commands: int) -> None:
        """Hard deadline on the match stage: count and log the miss (the batch goes on:
        stopping would lose nothing but help nobody)."""
        self.match_misses += 1
        now = self._mono()
        if self.match_misses > 1 and now - self._match_logged < 1_000_000_000:
            return  # an overloaded loop misses every batch: one line a second is enough
        self._match_logged = now
        log.error("hard deadline missed: match stage took %.1f ms for %d commands "
                  "(match_deadline_ms=%g; %d misses so far)", match_ns / 1e6, commands,
                  self.match_deadline_ns / 1e6, self.match_misses)

    def _publish_took(self, publish_ns: int) -> None:
        """Record the release stage's time; past ``publish_ms`` it is a soft deadline miss
        (counted, its lateness recorded, the batch still released)."""
        self.stage_publish.record(publish_ns)
        if publish_ns > self.publish_deadline_ns:
            self.publish_misses += 1
            self.publish_lateness.record(publish_ns - self.publish_deadline_ns)

    def _stale_report(self, cmd: NewOrder | Replace, ev: Rejected) -> ExecReport:
        """The submitter's reject report of a stale command: report number 0 (like a
        gateway's own rejects), so the account's numbered reports stay gap-free."""
        side = cmd.side if isinstance(cmd, NewOrder) else 0
        return ExecReport(0, self._clock(), cmd.account, _EXEC_REJECTED, cmd.symbol,
                          ev.order_id, cmd.client_order_id, side, cmd.price, cmd.quantity, 0,
                          reason=_STALE, text=ev.text)

    @staticmethod
    def _answer(q: _Query) -> None:
        try:
            q.reply(q.ask())
        except Exception:  # a broken session must not stop the exchange
            log.exception("query failed")

    def snapshot(self, *, wait: bool = True) -> Path | None:
        """Snapshot the engine now (between batches). The journal is synced and the state
        copied on the loop; encoding, writing and the fsyncs run on a background thread
        (``wait=False``: return at once; ``snapshot_every`` uses that, so a big book never
        stalls the loop). One snapshot is written at a time: if the previous one is still
        being written, this one is skipped (and counted). Returns the path when waited."""
        self._since_snapshot = 0
        if self.journal is None:
            return None
        if self._snapshot_future is not None and not self._snapshot_future.done():
            if not wait:
                self.snapshots_skipped += 1
                return None
            with contextlib.suppress(Exception):  # its failure is logged and counted
                self._snapshot_future.result()
        snap = self.engine.snapshot()
        snap.attachments[ReportBuilder.key] = self.reports.state()
        write = self.journal.snapshot_writer(snap)
        if self._snapshot_pool is None:
            self._snapshot_pool = ThreadPoolExecutor(1, thread_name_prefix="snapshot")
        self._snapshot_future = self._snapshot_pool.submit(self._write_snapshot, write)
        return self._snapshot_future.result() if wait else None

    def _write_snapshot(self, write: Callable[[], Path]) -> Path:
        """Run on the snapshot thread: write, then count the outcome. A failure is logged
        and counted here (nobody may ever wait on a ``wait=False`` future) and re-raised
        for a ``wait=True`` caller; the temporary file is already gone
        (:func:`~tickline.journal.snapshot.atomic_write`)."""
        try:
            path = write()
        except Exception as exc:
            self.snapshots_failed += 1
            self.snapshot_error = str(exc)
            log.error("snapshot failed (%d so far); the exchange goes on, the journal is "
                      "intact: %s", self.snapshots_failed, exc)
            raise
        self.snapshots += 1
        self.snapshot_error = None
        return path

    def _finish_snapshots(self) -> None:
        """Wait for a snapshot being written, then stop the snapshot thread. Never raises:
        a failure was logged and counted by :meth:`_write_snapshot`, and must not keep
        shutdown from closing the journal."""
        future = self._snapshot_future
        self._snapshot_future = None
        if future is not None:
            with contextlib.suppress(Exception):
                future.result()
        if self._snapshot_pool is not None:
            self._snapshot_pool.shutdown()
            self._snapshot_pool = None

    # -- driving --------------------------------------------------------------------------

    def pump(self) -> int:
        """Process everything waiting now (all stages); return the number of commands. For
        tests and tools that drive the exchange synchronously."""
        return self.processor.drain()

    def process_now(self, cmd: Command) -> list[Event]:
        """Submit one command, pump, and return its events (synchronous convenience)."""
        result: list[Event] = []
        self.submit(cmd, lambda _c, events, _r: result.extend(events))
        self.pump()
        return result

    async def run(self) -> None:
        """Drive the stages on the running event loop until :meth:`stop`. Arms a timer for
        the next GTD expiry so engine time moves even when no orders arrive."""
        processor = self.processor
        journal = self.journal
        idle_sync = journal is not None and journal.durability == "interval"
        while True:
            self._arm_expiry_timer()
            if idle_sync and journal is not None and journal.unsynced:
                # durability "interval": bound the loss window even when no commit comes
                try:
                    async with asyncio.timeout(journal.interval_ns / 1e9):
                        await processor.wait_for_work()
                except TimeoutError:
                    journal.sync()
                    continue
            else:
                await processor.wait_for_work()
            processor.drain()
            if processor.stopping and not processor.has_work():
                return

    def _arm_expiry_timer(self) -> None:
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        due = self.engine.next_expiry
        if due is None or self._stopping:
            return
        delay = max(0.0, (due - self._clock()) / 1e9)
        self._wakeup = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._wakeup = None
        with contextlib.suppress(ExchangeBusy, ExchangeStopped):
            self.submit(TimeTick())

    async def stop(self) -> None:
        """Accept nothing more, drain what was accepted (all stages), sync and close the
        journal. Safe to call twice."""
        self.close()

    def close(self) -> None:
        """Stop accepting, drain synchronously (this thread is the consumer), wake a
        :meth:`run` task so it returns, and close the journal after a final sync."""
        self._stopping = True
        self.resumer.close()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if self.failure is not None:
            # The journal failed: match nothing more (it could not be recorded), close
            # what can be closed. The commands still queued were never acknowledged.
            self._finish_snapshots()
            if self.journal is not None:
                with contextlib.suppress(Exception):
                    self.journal.close()
                self.journal = None
            return
        self.processor.stop()
        self.processor.drain()
        self._finish_snapshots()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    # -- observability ------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """A snapshot of every counter: exchange, processor, journal, publisher, bus."""
        stats: dict[str, Any] = {
            "last_seq": self._seq,
            "commands": self.commands,
            "events": self.events,
            "resting_orders": len(self.engine.orders),
            "processor": self.processor.statistics().as_dict(),
            "publisher": self.publisher.statistics(),
            "reports": {"built": self.reports.reports, **self.router.statistics()},
            "lanes": {"enabled": self.lanes, "held_back": self.held_back,
                      "deferred": self.deferred},
            "deadlines": {"stale_orders": self.stale_orders,
                          "match_misses": self.match_misses,
                          "publish_misses": self.publish_misses},
        }
        if self.journal is not None:
            stats["journal"] = self.journal.statistics()
        stats["snapshots"] = self.snapshot_statistics()
        return stats

    def snapshot_statistics(self) -> dict[str, int | str | None]:
        """The snapshot counters (see ``__init__``) and the last failure, if it is current."""
        return {"written": self.snapshots, "failed": self.snapshots_failed,
                "skipped": self.snapshots_skipped, "last_error": self.snapshot_error}

    def prometheus(self) -> str:
        """Every metric of :class:`ExchangeCollector`, in the Prometheus text format."""
        return exposition(ExchangeCollector(self))


_HELP = {"snapshots": "snapshots written", "snapshots_failed": "snapshot writes that failed "
         "(logged; the journal is intact)", "snapshots_skipped": "snapshots not started "
         "because the previous one was still being written",
         "stale_orders": "new orders and replaces rejected STALE_ORDER: waited longer than "
         "max_queue_ms in the inbound ring (firm deadline)",
         "cancels_held_back": "cancels kept behind the same account's earlier commands",
         "deferred_behind_cancels": "commands taken ahead of an earlier cancel of their "
         "account (starvation bound) and sequenced after it",
         "match_deadline_misses": "batches whose match stage exceeded match_ms (hard, logged)",
         "publish_deadline_misses": "batches whose release stage exceeded publish_ms (soft)"}


class ExchangeCollector(FamiliesCollector):
    """The exchange's metrics at scrape time: its counters and stage histograms
    (``tickline_exchange_*``) and its inbound processor's (``tickline_inbound_*``).

    Stage latencies: "sequence" is the wait in the inbound ring until the sequencer takes
    the command; match/journal/publish are per batch.
    """

    def __init__(self, exchange: Exchange) -> None:
        def families() -> list[Metric]:
            ex = exchange
            inbound = ex.processor.statistics()  # one snapshot of the ring's queue wait
            counters: dict[str, int | float] = {
                "commands": ex.commands,
                "events": ex.events,
                "snapshots": ex.snapshots,
                "snapshots_failed": ex.snapshots_failed,
                "snapshots_skipped": ex.snapshots_skipped,
                "stale_orders": ex.stale_orders,
                "cancels_held_back": ex.held_back,
                "deferred_behind_cancels": ex.deferred,
                "match_deadline_misses": ex.match_misses,
                "publish_deadline_misses": ex.publish_misses,
            }
            stages = [
                dataclasses.replace(inbound.queue_wait_ns, name="sequence_ns"),
                ex.stage_match.snapshot(), ex.stage_journal.snapshot(),
                ex.stage_publish.snapshot(), ex.publish_lateness.snapshot(),
            ]
            return [*metric_families("tickline_exchange", counters, stages, help_text=_HELP),
                    *processor_families(inbound, "tickline_inbound")]

        super().__init__(families)


__all__ = ["HIGH_PRIORITY", "Exchange", "ExchangeBusy", "ExchangeCollector", "ExchangeStopped",
           "Reply"]
