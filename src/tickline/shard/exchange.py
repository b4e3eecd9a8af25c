"""``tickline serve --shards N``: the gateway-side exchange that feeds N shard processes.

:class:`ShardedExchange` is an :class:`~tickline.exchange.Exchange` for the gateways (the same
``submit``/``submit_many``/``submit_deferred``/``query``, ``reports``, ``router``,
``publisher``, ``bus``) whose MATCH and JOURNAL stages run in shard processes::

    gateways ─► SEQUENCE (here: one global seq + engine time) ─► route by symbol
                  │ per batch: one frame per shard over its shm ring
                  ▼
      shard-0 process: match, journal <data>/shard-0, commit ─► events back (shm ring)
      shard-1 process: match, journal <data>/shard-1, commit ─► events back
                  │
                  ▼
    RELEASE (here, in global seq order): market data, execution reports (one per-account
    numbering across shards), replies — only after every shard involved committed.

Routing: a command naming a symbol goes to that symbol's shard (:mod:`.mapping`); a
``CancelOrders`` is split by the shard each order id names (:mod:`.engine`); ``TimeTick``,
``SetAccountStatus`` and an all-symbol ``MassCancel`` go to every shard and their events are
merged (one ``MassCancelled``/``AccountStatusChanged`` with the summed count; the per-order
events shard by shard).

Failure: a shard found dead while idle is marked down and restarted from its journal on a
background thread; meanwhile commands for its symbols are answered with a
``SHARD_UNAVAILABLE`` (411) reject that was never sequenced (report ``seq`` 0, nothing
changed). A shard that dies or hangs (``reply_timeout``) while it holds a batch is restarted
at once, in the batch: it reports the events of whatever it had journaled (released
normally), and its commands that never reached its journal are answered with 411 — none
was acknowledged, none is lost silently — except the parts of commands sent to several
shards (a broadcast, a split ``CancelOrders``): those are sent again to the restarted shard,
so such a command is released only with every part journaled, equal to a replay.

Start-up: each shard recovers its own journal; then this process rebuilds the report
numbering and the market-data books by replaying every shard journal merged by sequence
number (from the beginning: the gateway state is not snapshotted yet).

Limits (documented in ``docs/shards.md``): account risk limits are enforced per shard;
trade ids are unique per symbol, not exchange-wide.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from tickline.core.shm_ring import BackoffWait, SpscShmRing
from tickline.exchange import Exchange, _Inbound
from tickline.journal import RecoveryReport
from tickline.loop import stamp
from tickline.matching import (
    Accepted,
    Command,
    EngineConfig,
    Event,
    Instrument,
    TimeTick,
)
from tickline.matching.commands import CancelOrders, MassCancel, SetAccountStatus
from tickline.matching.events import Rejected, Trade
from tickline.matching.types import RejectReason
from tickline.shard.channel import SLOT, FrameReader, FrameWriter
from tickline.shard.engine import engine_for_shard, shard_of_order
from tickline.shard.mapping import ShardMap, shard_dir
from tickline.shard.merge import merge_events
from tickline.shard.protocol import Done, Hello, State, decode_reply, encode
from tickline.shard.replay import replay_merged
from tickline.shard.worker import ShardSpec, shard_main
from tickline.stream import MarketDataPublisher
from tickline.stream.reports import ExecKind, ExecReport, ReportBuilder

log = logging.getLogger(__name__)

__all__ = ["ShardFailed", "ShardHandle", "ShardedExchange"]

_UNAVAILABLE = int(RejectReason.SHARD_UNAVAILABLE)
_RING_SLOTS = 1 << 14


class ShardFailed(Exception):
    """A shard process died or did not answer in time."""


class ShardHandle:
    """The gateway's side of one shard process: its rings, its process, its state."""

    def __init__(self, index: int, make_spec: Callable[[int, str, str], ShardSpec]) -> None:
        self.index = index
        self._make_spec = make_spec
        self.process: Any = None
        self.inbound: SpscShmRing | None = None   # gateway → shard
        self.outbound: SpscShmRing | None = None  # shard → gateway
        self.writer: FrameWriter | None = None
        self.reader: FrameReader | None = None
        self.up = False
        self.restarting = False
        self.acked_seq = 0
        """The last seq whose events this side holds (the restart's ``acked_seq``)."""
        self.next_expiry: int | None = None
        self.restarts = 0
        self.discard_unreleased = False
        self.last_error: str | None = None
        self.hello: Hello | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.pid is not None and \
            self.process.is_alive()

    def start(self, timeout: float) -> Hello:
        """Spawn the process with fresh rings and wait for its :class:`Hello`."""
        self._discard()
        self.inbound = SpscShmRing.create(capacity=_RING_SLOTS, slot_size=SLOT,
                                          wait=BackoffWait())
        self.outbound = SpscShmRing.create(capacity=_RING_SLOTS, slot_size=SLOT,
                                           wait=BackoffWait())
        self.writer = FrameWriter(self.inbound)
        self.reader = FrameReader(self.outbound)
        spec = self._make_spec(self.acked_seq, self.inbound.name, self.outbound.name)
        spec.discard_unreleased = self.discard_unreleased
        self.process = mp.get_context("spawn").Process(
            target=shard_main, args=(spec,), name=f"tickline-shard-{self.index}", daemon=True)
        self.process.start()
        deadline = time.monotonic() + timeout
        while True:
            frames = self.reader.poll(0.05)
            if frames:
                hello = decode_reply(frames[0])
                if not isinstance(hello, Hello):  # pragma: no cover - protocol error
                    raise ShardFailed(f"shard {self.index}: expected Hello")
                self.hello = hello
                self.next_expiry = hello.next_expiry
                # everything it journaled is released or comes back in ``late``: set before
                # ``up``, which lets the loop thread use it again
                self.acked_seq = max([hello.last_seq, *(seq for seq, _ in hello.late)])
                self.up = True
                self.last_error = None
                return hello
            if not self.process.is_alive():
                raise ShardFailed(f"shard {self.index} exited during start-up "
                                  f"(code {self.process.exitcode})")
            if time.monotonic() > deadline:
                raise ShardFailed(f"shard {self.index} not ready after {timeout}s")

    def send(self, cmds: list[Command], timeout: float) -> None:
        assert self.writer is not None
        if not self.writer.send(encode(cmds), timeout):
            raise ShardFailed(f"shard {self.index}: inbound ring stayed full for {timeout}s")

    def collect(self, want: int, timeout: float) -> list[tuple[int, list[Event]]]:
        """Wait for the results of ``want`` commands (one :class:`Done` or more)."""
        assert self.reader is not None
        out: list[tuple[int, list[Event]]] = []
        deadline = time.monotonic() + timeout
        while len(out) < want:
            frames = self.reader.poll(0.02)
            for frame in frames:
                done = decode_reply(frame)
                if isinstance(done, Done):
                    out.extend(done.results)
                    self.next_expiry = done.next_expiry
            if len(out) >= want:
                break
            if not frames:
                if not self.alive():
                    raise ShardFailed(f"shard {self.index} died (exit code "
                                      f"{self.process.exitcode if self.process else None})")
                if time.monotonic() > deadline:
                    raise ShardFailed(f"shard {self.index} did not answer in {timeout}s")
        if out:
            self.acked_seq = max(self.acked_seq, out[-1][0])
        return out

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.join(5)

    def stop(self, timeout: float = 30.0) -> None:
        """Close its inbound stream (it commits, closes its journal and exits), join."""
        if self.inbound is not None:
            with contextlib.suppress(Exception):
                self.inbound.close_writer()
        if self.process is not None and self.process.pid is not None:
            self.process.join(timeout)
            if self.process.is_alive():  # pragma: no cover - a hung shard at shutdown
                self.process.kill()
                self.process.join(5)
        self.up = False
        self._discard()

    def _discard(self) -> None:
        for ring in (self.inbound, self.outbound):
            if ring is not None:
                with contextlib.suppress(Exception):
                    ring.close()
                with contextlib.suppress(Exception):
                    ring.unlink()
        self.inbound = self.outbound = None
        self.writer = None
        self.reader = None

    def status(self) -> dict[str, Any]:
        return {"shard": self.index, "up": self.up and self.alive(), "pid": self.pid,
                "restarting": self.restarting, "restarts": self.restarts,
                "acked_seq": self.acked_seq, "last_error": self.last_error}


class _EngineView:
    """What gateways and observers read of ``exchange.engine`` in shard mode: the released
    state kept on this side (the engines themselves live in the shard processes)."""

    def __init__(self, ex: ShardedExchange) -> None:
        self._ex = ex

    @property
    def last_seq(self) -> int:
        return self._ex.released_seq

    @property
    def orders(self) -> Mapping[int, Any]:
        """Live orders as of the last released command (cancel-on-disconnect's check)."""
        return self._ex.reports._orders

    @property
    def next_expiry(self) -> int | None:
        due = [s.next_expiry for s in self._ex.shards if s.next_expiry is not None]
        return min(due) if due else None

    @property
    def next_trade_id(self) -> int:
        return self._ex.trades + 1

    @property
    def next_order_id(self) -> int:
        return self._ex.max_order_id + 1

    @property
    def books(self) -> Mapping[str, Any]:
        return self._ex.books


class ShardedExchange(Exchange):
    """An exchange whose engines run in ``shards`` processes (see the module docs).
    ``data_dir`` holds ``shards.json`` and one ``shard-K`` journal per shard (None: no
    journals, for benchmarks and tests of the other stages)."""

    def __init__(self, instruments: Iterable[Instrument], *, shards: int,
                 data_dir: Path | str | None, shard_map: Mapping[str, int] | None = None,
                 engine_config: EngineConfig | None = None, durability: str = "batch",
                 interval_ms: int = 5, snapshot_every: int = 0, capacity: int = 65536,
                 max_batch: int = 1024, report_history: int = 4096,
                 clock: Callable[[], int] = time.time_ns, start_timeout: float = 60.0,
                 reply_timeout: float = 5.0, lanes: bool = False,
                 max_queue_ms: float = 1000.0, match_deadline_ms: float = 0.0,
                 publish_deadline_ms: float = 200.0,
                 monotonic: Callable[[], int] = time.monotonic_ns) -> None:
        instruments = list(instruments)
        self.map = ShardMap(shards, [i.symbol for i in instruments], shard_map)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if self.data_dir is not None:
            self.map.persist(self.data_dir)
        super().__init__(instruments, engine_config=engine_config, journal_dir=None,
                         capacity=capacity, max_batch=max_batch, clock=clock,
                         report_history=report_history, max_queue_ms=max_queue_ms,
                         match_deadline_ms=0, publish_deadline_ms=publish_deadline_ms,
                         monotonic=monotonic)
        _warn_unapplied(lanes, match_deadline_ms)
        self.start_timeout = start_timeout
        self.reply_timeout = reply_timeout
        self.released_seq = 0
        self.trades = 0
        self.max_order_id = 0
        cfg = self.engine_config

        def spec_maker(k: int) -> Callable[[int, str, str], ShardSpec]:
            def make(acked: int, in_ring: str, out_ring: str) -> ShardSpec:
                directory = (str(shard_dir(self.data_dir, k))
                             if self.data_dir is not None else None)
                return ShardSpec(k, shards, directory, instruments, cfg, durability,
                                 interval_ms, snapshot_every, acked, in_ring, out_ring)
            return make

        self.shards = [ShardHandle(k, spec_maker(k)) for k in range(shards)]
        self._outbox: list[list[Command]] = [[] for _ in self.shards]
        self._spread: set[int] = set()
        """Seqs of this batch's commands sent to more than one shard (broadcasts, a split
        ``CancelOrders``): re-sent to a shard restarted in the batch (see _recover_in_batch)."""
        self._restart_threads: list[threading.Thread] = []
        t0 = time.perf_counter()
        try:
            hellos = [self._start(s, acked=1 << 62) for s in self.shards]
            self._rebuild([h.last_seq for h in hellos])
            # what the operator sees of recovery: every shard's, summed
            self.recovery = RecoveryReport(
                records_replayed=sum(h.records_replayed for h in hellos),
                last_seq=self._seq, seconds=time.perf_counter() - t0)
        except BaseException:
            for s in self.shards:
                s.kill()
                s.stop(1)
            raise
        self.engine = _EngineView(self)  # type: ignore[assignment]
        self.resumer.journal_dir = self.data_dir  # resume beyond memory: the merged journals

    # -- start-up -----------------------------------------------------------------------

    def _start(self, shard: ShardHandle, acked: int, *, discard: bool = False) -> Hello:
        """Start ``shard``; it returns the events of what it journaled after ``acked``
        (``discard``: it cuts them from its journal instead — they were answered 411)."""
        shard.acked_seq = acked
        shard.discard_unreleased = discard
        return shard.start(self.start_timeout)

    def _rebuild(self, last_seqs: list[int]) -> None:
        """Replay every shard journal, merged by seq, through per-shard engines: the report
        numbering, the live orders and the books as of the last journaled command."""
        n = self.map.shards
        engines = [engine_for_shard(self.instruments, self.engine_config, k, n)
                   for k in range(n)]
        reports = ReportBuilder()
        if self.data_dir is not None:
            for cmd, events in replay_merged(self.data_dir, shards=n, to_seqs=last_seqs,
                                             engines=engines):
                self._count(events)
                reports.build(cmd.seq, cmd.ts, events)
        self.reports = reports
        self.books = {sym: engines[k].books[sym] for sym, k in self.map.assignment.items()}
        self.publisher = MarketDataPublisher(self.bus, self.instruments, books=self.books)
        self._seq = max([0, *last_seqs])
        self._last_ts = max(e.now for e in engines)
        self.released_seq = self._seq

    def _count(self, events: list[Event]) -> None:
        for e in events:
            kind = type(e)
            if kind is Trade:
                self.trades += 1
            elif kind is Accepted and e.order_id > self.max_order_id:  # type: ignore[union-attr]
                self.max_order_id = e.order_id  # type: ignore[union-attr]

    # -- stages 1 and 2: sequence here, route to the shards -------------------------------

    def _targets(self, cmd: Command) -> list[tuple[int, Command]]:
        n = self.map.shards
        symbol = getattr(cmd, "symbol", "")
        if symbol:
            k = self.map.shard_of(symbol)
            return [(0 if k is None else k, cmd)]  # unknown: shard 0 rejects it
        if type(cmd) is CancelOrders:
            split: dict[int, list[int]] = {}
            for oid in cmd.order_ids:
                split.setdefault(shard_of_order(oid, n), []).append(oid)
            if not split:
                return [(0, cmd)]
            return [(k, msgspec.structs.replace(cmd, order_ids=tuple(ids)))
                    for k, ids in sorted(split.items())]
        if type(cmd) in (TimeTick, SetAccountStatus, MassCancel):
            return [(k, cmd) for k in range(n)]
        return [(0, cmd)]  # pragma: no cover - every command kind is handled above

    def _sequence_and_match(self, item: _Inbound) -> None:
        if self._slow and self._intercept(item):
            return  # a new order or replace past max_queue_ms: STALE_ORDER (410), unsequenced
        if not self._pending:
            self._batch_started = time.perf_counter_ns()
        if item.make is not None:
            if self._pending:
                # make() reads the released state (port.orders, the live orders), which
                # changes only when a batch is released: finish the batch so far first, as
                # Exchange matches it (cancel on disconnect must see an order entered in
                # this same batch)
                self._release_batch()
                self._batch_started = time.perf_counter_ns()
            made = item.make()
            if made is None:
                return
            item.cmd = made
        cmd = item.cmd
        targets = self._targets(cmd)
        if not all(self.shards[k].up for k, _ in targets):
            if type(cmd) is TimeTick:
                return  # the next tick covers it once the shard is back
            self._pending.append((item, [_unavailable(cmd)]))
            return
        self._seq += 1
        self._last_ts = ts = stamp(cmd, self._seq, self._last_ts, self._clock())
        for k, sub in targets:
            if sub is not cmd:
                sub.seq = cmd.seq
                sub.ts = ts
            self._outbox[k].append(sub)
        if len(targets) > 1:
            self._spread.add(cmd.seq)
        self._pending.append((item, []))

    # -- stages 3 and 4 -------------------------------------------------------------------

    def _dispatch(self) -> dict[int, list[tuple[int, list[Event]]]]:
        """Send every shard its frame, collect every result; a failing shard is restarted in
        place. Returns the events per seq: one ``(shard, events)`` per shard involved."""
        box = self._outbox
        sent: list[int] = []
        by_seq: dict[int, list[tuple[int, list[Event]]]] = {}
        for k, cmds in enumerate(box):
            if not cmds:
                continue
            try:
                self.shards[k].send(cmds, self.reply_timeout)
                sent.append(k)
            except ShardFailed as exc:
                self._recover_in_batch(k, cmds, by_seq, exc)
        for k in sent:
            cmds = box[k]
            try:
                results = self.shards[k].collect(len(cmds), self.reply_timeout)
            except ShardFailed as exc:
                self._recover_in_batch(k, cmds, by_seq, exc)
                continue
            for seq, events in results:
                by_seq.setdefault(seq, []).append((k, events))
        for cmds in box:
            cmds.clear()
        self._spread.clear()
        return by_seq

    def _recover_in_batch(self, k: int, cmds: list[Command],
                          by_seq: dict[int, list[tuple[int, list[Event]]]],
                          exc: Exception) -> None:
        """Shard ``k`` failed holding ``cmds``: restart it now from its journal; what it had
        journaled comes back as its late results. Of the rest (a suffix of ``cmds``: a
        journal holds a prefix), a command that went to other shards too (a broadcast, a
        split ``CancelOrders``) is sent again to the restarted shard, in order, so its
        every part is journaled and released (never half a kill switch); a command for this
        shard only is answered 411 (it changed nothing anywhere)."""
        shard = self.shards[k]
        log.error("%s; restarting it from its journal", exc)
        shard.last_error = str(exc)
        shard.up = False
        shard.kill()
        shard.restarts += 1
        got: set[int] = set()
        try:
            hello = self._start(shard, shard.acked_seq)
            for seq, events in hello.late:
                by_seq.setdefault(seq, []).append((k, events))
                got.add(seq)
            again = [c for c in cmds if c.seq not in got and c.seq in self._spread]
            if again:
                try:
                    shard.send(again, self.reply_timeout)
                    for seq, events in shard.collect(len(again), self.reply_timeout):
                        by_seq.setdefault(seq, []).append((k, events))
                        got.add(seq)
                except ShardFailed:  # failed again: as if its restart had failed
                    shard.up = False
                    shard.kill()
                    raise
        except Exception as failed:
            shard.last_error = str(failed)
            log.error("shard %d restart failed: %s; retrying in the background", k, failed)
            self._restart_later(shard)
        for cmd in cmds:
            if cmd.seq not in got:
                by_seq.setdefault(cmd.seq, []).append((k, [_UNSEQUENCED]))

    def _end_of_batch(self, n: int) -> None:
        self._release_batch()
        # the per-batch flags _start_of_batch set (the stale prefix)
        self._slow = False
        self._stale_left = 0
        self._guard = False
        self._stale_in_batch = 0

    def _release_batch(self) -> None:
        """Stages 3 and 4 for everything pending: dispatch to the shards (match, journal),
        then release in seq order. Also called within a batch, before a deferred command is
        made (the per-batch flags stay)."""
        pending = self._pending
        if not pending:
            while self._queries:
                self._answer(self._queries.popleft())
            return
        t1 = time.perf_counter_ns()
        self.stage_match.record(t1 - self._batch_started)
        by_seq = self._dispatch()  # MATCH + JOURNAL in the shards
        t2 = time.perf_counter_ns()
        self.stage_journal.record(t2 - t1)
        released: list[tuple[_Inbound, list[Event], bool]] = []
        for item, events in pending:
            if events:  # answered 411 (or 410, stale) before sequencing
                released.append((item, events, False))
                continue
            # the parts shard by shard, as a replay merges them (a shard restarted in the
            # batch may have answered first). A part that a failed shard never journaled
            # (only if its restart or the re-send failed too) is left out, as in a replay of
            # the journals; with no part journaled anywhere the command is 411
            parts = [p for _k, p in sorted(by_seq.get(item.cmd.seq, ()), key=_first)
                     if not p or p[0] is not _UNSEQUENCED]
            if not parts:
                released.append((item, [_unavailable(item.cmd)], False))
                continue
            released.append((item, merge_events(parts), True))
        self.publisher.publish_batch([(item.cmd.seq, item.cmd.ts, events)
                                      for item, events, ok in released if ok])
        events_out = 0
        build = self.reports.build
        route = self.router.route
        record = self.history.record
        queries = self._queries
        for done, (item, events, ok) in enumerate(released):
            while queries and queries[0].after == done:
                self._answer(queries.popleft())
            cmd = item.cmd
            try:
                if not ok:
                    if item.reply is not None:
                        item.reply(cmd, events, [_reject_report(cmd, events[0])])
                    continue
                events_out += len(events)
                self._count(events)
                reports = build(cmd.seq, cmd.ts, events)
                record(reports)
                self.released_seq = cmd.seq
                origin = item.origin
                if origin is not None and events and type(events[0]) is Accepted:
                    origin.orders.add(events[0].order_id)
                own = route(reports, getattr(cmd, "account", 0), origin)
                if item.reply is not None:
                    item.reply(cmd, events, own)
            except Exception:  # a broken session must not stop the exchange
                log.exception("report delivery failed for seq %d", cmd.seq)
        self._publish_took(time.perf_counter_ns() - t2)
        self.commands += sum(1 for r in released if r[2])
        self.events += events_out
        pending.clear()
        while queries:
            self._answer(queries.popleft())

    # -- supervision ----------------------------------------------------------------------

    def check_shards(self) -> None:
        """Mark a dead idle shard down and restart it in the background (commands for its
        symbols are answered 411 meanwhile). Called periodically by :meth:`run`."""
        for shard in self.shards:
            if shard.up and not shard.alive():
                code = shard.process.exitcode if shard.process is not None else None
                shard.up = False
                shard.last_error = f"shard {shard.index} died (exit code {code})"
                shard.restarts += 1
                log.error("%s; restarting it from its journal", shard.last_error)
                self._restart_later(shard)

    def _restart_later(self, shard: ShardHandle) -> None:
        if shard.restarting:
            return
        shard.restarting = True

        def restart() -> None:
            delay = 0.1
            while not self._stopping:
                try:
                    shard.kill()
                    # whatever it journaled after acked_seq was answered 411 (an in-batch
                    # restart that failed) or never sent: it must not take effect
                    self._start(shard, shard.acked_seq, discard=True)
                    break
                except Exception as exc:
                    shard.last_error = str(exc)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
            shard.restarting = False

        t = threading.Thread(target=restart, name=f"restart-shard-{shard.index}", daemon=True)
        self._restart_threads.append(t)
        t.start()

    async def run(self) -> None:
        import asyncio

        async def watch() -> None:
            while not self._stopping:
                self.check_shards()
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch(), name="shard-watch")
        try:
            await super().run()
        finally:
            watcher.cancel()

    def close(self) -> None:
        super().close()
        for t in self._restart_threads:
            t.join(self.start_timeout)
        for shard in self.shards:
            shard.stop()

    def snapshot(self, *, wait: bool = True) -> Path | None:
        return None  # each shard snapshots itself (``snapshot_every``)

    def shard_states(self, timeout: float = 10.0) -> list[State]:
        """Each shard engine's digests, as of everything released (call between batches,
        on the loop: the rings are this thread's)."""
        out: list[State] = []
        for shard in self.shards:
            shard.send([], timeout)
            assert shard.reader is not None
            deadline = time.monotonic() + timeout
            while True:
                frames = shard.reader.poll(0.02)
                states = [r for r in map(decode_reply, frames) if isinstance(r, State)]
                if states:
                    out.append(states[0])
                    break
                if time.monotonic() > deadline:
                    raise ShardFailed(f"shard {shard.index}: no state in {timeout}s")
        return out

    def digest(self) -> str:
        """Every symbol's book digest (each from its shard) and the id counters: equal for
        equal histories, whatever the process layout."""
        books: dict[str, str] = {}
        for state in self.shard_states():
            books.update(state.books)
        return "|".join(books[s] for s in sorted(books))

    def shard_health(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.shards]

    def statistics(self) -> dict[str, Any]:
        return {"last_seq": self._seq, "commands": self.commands, "events": self.events,
                "resting_orders": len(self.reports._orders),
                "processor": self.processor.statistics().as_dict(),
                "publisher": self.publisher.statistics(),
                "reports": {"built": self.reports.reports, **self.router.statistics()},
                "snapshots": self.snapshot_statistics(), "shards": self.shard_health()}


_UNSEQUENCED: Event = Rejected(0, "", "", 0, _UNAVAILABLE, "shard unavailable")


def _first(part: tuple[int, list[Event]]) -> int:
    return part[0]


def _warn_unapplied(lanes: bool, match_deadline_ms: float) -> None:
    """Say at start what of ``[lanes]``/``[deadlines]`` shard mode does not apply (the
    configuration is accepted: the same file serves both modes)."""
    unapplied = []
    if lanes:
        unapplied.append("[lanes] (one inbound lane: commands are sequenced in arrival order)")
    if match_deadline_ms > 0:
        unapplied.append("[deadlines] match_ms (the shards match; not checked here)")
    if unapplied:
        log.warning("shard mode (--shards) does not apply %s; [deadlines] max_queue_ms "
                    "(STALE_ORDER 410) and publish_ms do apply (docs/shards.md; [lanes] "
                    "enabled = false and [deadlines] match_ms = 0 silence this)",
                    " and ".join(unapplied))


def _unavailable(cmd: Command) -> Event:
    return Rejected(getattr(cmd, "account", 0), getattr(cmd, "client_order_id", ""),
                    getattr(cmd, "symbol", ""), getattr(cmd, "order_id", 0), _UNAVAILABLE,
                    "the shard for this symbol is unavailable (restarting); retry")


def _reject_report(cmd: Command, ev: Any) -> ExecReport:
    """A reject that never reached a shard (411 unavailable, 410 stale): report ``seq`` 0
    (not numbered, like a gateway's busy reject), command seq 0."""
    return ExecReport(0, cmd.ts, ev.account, int(ExecKind.REJECTED), ev.symbol, ev.order_id,
                      ev.client_order_id, getattr(cmd, "side", 0), getattr(cmd, "price", 0),
                      getattr(cmd, "quantity", 0), 0, reason=ev.reason, text=ev.text)
