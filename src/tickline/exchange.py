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
from tickline.matching import (
    Accepted,
    Command,
    EngineConfig,
    Event,
    Instrument,
    MatchingEngine,
    TimeTick,
)
from tickline.resume import Resumer
from tickline.stream import Bus, MarketDataPublisher
from tickline.stream.history import ReportHistory
from tickline.stream.reports import ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort, ReportRouter

log = logging.getLogger(__name__)

Reply = Callable[[Command, list[Event], list[ExecReport]], None]
"""``reply(cmd, events, reports)``: the command as sequenced, its engine events, and its
execution reports for the submitting account (report-sequence order)."""


class ExchangeBusy(Exception):
    """The inbound ring is full: the command was not accepted (backpressure ``reject``)."""


class ExchangeStopped(Exception):
    """The exchange is stopping or has stopped and accepts nothing more."""


class _Inbound:
    """One accepted command waiting in the inbound ring (``make``: a command built only when
    the sequencer reaches it, from the state at that point; None = nothing to do)."""

    __slots__ = ("cmd", "make", "origin", "reply")

    def __init__(self, cmd: Command | None, reply: Reply | None, origin: ReportPort | None,
                 make: Callable[[], Command | None] | None = None) -> None:
        self.cmd: Command = cmd  # type: ignore[assignment]  # None: make() sets it
        self.reply = reply
        self.origin = origin
        self.make = make


class _Query:
    """A read-only question about the released state, answered in sequence (``after``: how
    many commands of its batch came before it)."""

    __slots__ = ("after", "ask", "reply")

    def __init__(self, ask: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        self.ask = ask
        self.reply = reply
        self.after = 0


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
        self.processor: EventProcessor[_Inbound | _Query] = EventProcessor(
            name="exchange", capacity=capacity, max_batch=max_batch, policy="reject",
            clock=time.monotonic_ns, batch_end=self._end_of_batch,
        )
        self.processor.register(_Inbound, self._sequence_and_match)
        self.processor.register(_Query, self._ask)
        # Stage timings, one sample per batch (ns); written by the consumer only.
        self.stage_match = LatencyRecorder("match_ns")
        self.stage_journal = LatencyRecorder("journal_ns")
        self.stage_publish = LatencyRecorder("publish_ns")
        self.commands = 0
        self.events = 0
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
        try:
            self.processor.submit(_Inbound(cmd, reply, origin))
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None

    def submit_many(self, cmds: Sequence[Command], reply: Reply | None = None,
                    origin: ReportPort | None = None) -> int:
        """Accept several commands at once (e.g. every frame of one socket read): one ring
        operation and one enqueue timestamp for all of them. Returns how many were accepted
        — a prefix of ``cmds``; the rest met a full ring (the caller rejects them as busy).
        Raises :class:`ExchangeStopped` once stopping."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        items = [_Inbound(cmd, reply, origin) for cmd in cmds]
        try:
            return self.processor.submit_many(items)
        except ProcessorFull:
            return 0

    def submit_deferred(self, make: Callable[[], Command | None], reply: Reply | None = None,
                        origin: ReportPort | None = None) -> None:
        """Accept a command that ``make()`` builds when the sequencer reaches it, from the
        state at that point (e.g. cancel on disconnect: the session's orders still live
        once everything it sent before has been matched); ``make()`` returning None
        submits nothing. Raises like :meth:`submit`."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        try:
            self.processor.submit(_Inbound(None, reply, origin, make))
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None

    def query(self, ask: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        """Ask a read-only question in sequence: ``ask()`` runs in the RELEASE stage right
        after every command submitted before it (by anyone) has been journaled and its
        reports built, and before any later command is released, so what it reads of the
        report builder (:attr:`reports`: order state, open orders) is exact at its place;
        then ``reply(answer)``. (The engine itself may be ahead by the rest of the batch.)
        Not sequenced, not journaled. Raises like :meth:`submit`."""
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        try:
            self.processor.submit(_Query(ask, reply))
        except ProcessorFull:
            raise ExchangeBusy(
                f"inbound ring full ({self.processor.queued()} commands waiting)") from None

    # -- stages 1 and 2 (per command) ---------------------------------------------------

    def _ask(self, item: _Query) -> None:
        if not self._pending and not self._sequenced and not self._queries:
            self._batch_started = time.perf_counter_ns()
        item.after = len(self._pending) + len(self._sequenced)
        self._queries.append(item)

    def _sequence_and_match(self, item: _Inbound) -> None:
        if not self._pending and not self._sequenced:
            self._batch_started = time.perf_counter_ns()
        if item.make is not None:
            self._match()  # make() reads the state after everything before it
            made = item.make()
            if made is None:
                return
            item.cmd = made
        cmd = item.cmd
        # 1 SEQUENCE
        self._seq += 1
        now = self._clock()
        ts = now if now > self._last_ts else self._last_ts + 1
        self._last_ts = ts
        cmd.seq = self._seq
        cmd.ts = ts
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
            results = self.engine.process_many([item.cmd for item in sequenced])
        except BaseException as exc:
            self.failure = exc
            self._stopping = True
            log.critical("the matching engine failed; the exchange stops", exc_info=exc)
            raise
        pending = self._pending
        for item, events in zip(sequenced, results, strict=True):
            pending.append((item, events))
            origin = item.origin
            if origin is not None and events and type(events[0]) is Accepted:
                origin.orders.add(events[0].order_id)  # its own from now (cancel on disconnect)
        sequenced.clear()

    # -- stages 3 and 4 (per batch) -----------------------------------------------------

    def _end_of_batch(self, n: int) -> None:
        self._match()
        pending = self._pending
        if not pending:
            while self._queries:
                self._answer(self._queries.popleft())
            return
        t1 = time.perf_counter_ns()
        self.stage_match.record(t1 - self._batch_started)
        # 3 JOURNAL
        journal = self.journal
        if journal is not None:
            try:
                journal.append_many([item.cmd for item, _ in pending])
                journal.commit()
            except BaseException as exc:
                # Fatal: nothing of this batch is released, and nothing more is accepted
                # (submitters get ExchangeStopped instead of waiting for a dead loop).
                self.failure = exc
                self._stopping = True
                log.critical("journal failed; the exchange stops", exc_info=exc)
                raise
        t2 = time.perf_counter_ns()
        self.stage_journal.record(t2 - t1)
        # 4 RELEASE: market data for the whole batch at once (one publish per topic
        # touched); then per command, in sequence order: its reports, the other sessions'
        # share through the router, the submitter's own with its reply.
        self.publisher.publish_batch([(item.cmd.seq, item.cmd.ts, events)
                                      for item, events in pending])
        events_out = 0
        build = self.reports.build
        route = self.router.route
        record = self.history.record
        queries = self._queries
        for done, (item, events) in enumerate(pending):
            while queries and queries[0].after == done:
                self._answer(queries.popleft())
            events_out += len(events)
            cmd = item.cmd
            reports = build(cmd.seq, cmd.ts, events)
            record(reports)
            try:
                own = route(reports, getattr(cmd, "account", 0), item.origin)
                if item.reply is not None:
                    item.reply(cmd, events, own)
            except Exception:  # a broken session must not stop the exchange
                log.exception("report delivery failed for seq %d", cmd.seq)
        self.stage_publish.record(time.perf_counter_ns() - t2)
        self.commands += len(pending)
        self.events += events_out
        self._since_snapshot += len(pending)
        pending.clear()
        while queries:
            self._answer(queries.popleft())
        if self.snapshot_every and self._since_snapshot >= self.snapshot_every:
            self.snapshot(wait=False)

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
         "because the previous one was still being written"}


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
            }
            stages = [
                dataclasses.replace(inbound.queue_wait_ns, name="sequence_ns"),
                ex.stage_match.snapshot(), ex.stage_journal.snapshot(),
                ex.stage_publish.snapshot(),
            ]
            return [*metric_families("tickline_exchange", counters, stages, help_text=_HELP),
                    *processor_families(inbound, "tickline_inbound")]

        super().__init__(families)


__all__ = ["Exchange", "ExchangeBusy", "ExchangeCollector", "ExchangeStopped", "Reply"]
