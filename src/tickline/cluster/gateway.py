"""The gateway side of cluster mode: an :class:`~tickline.exchange.Exchange` whose sequencer,
journal and engine are the shards' JetStream streams and engine processes.

:class:`ClusterExchange` keeps the interface the binary gateway (and the venue services)
use — ``submit``/``submit_many``/``submit_deferred``/``query``, ``reports``, ``router``,
``history``, ``resumer``, ``instruments`` — so the gateway code is not forked:

* **submit** routes each command to its shard (:class:`~tickline.cluster.shardmap.ShardMap`);
  the publisher appends what was submitted for a shard since its last publish to the shard's
  input log as ONE message (a batch, :class:`~tickline.cluster.wire.Logged`) with
  ``Nats-Msg-Id: <gateway>:<first ticket>`` — at once while fewer than
  ``batches_in_flight`` of the shard's batches are on the way, else when one comes back
  (natural batching under load); a batch that was lost on the way is re-sent,
  the same bytes with the same id (JetStream drops a copy; see
  :meth:`ClusterExchange._resender`). While NATS
  is unreachable, or a shard has had no leader for ``unavailable_after_s``, submits raise
  :class:`ClusterUnavailable` (reject code 412) — during a failover shorter than that the
  commands wait in the log and the clients see a pause, not errors.
* **release**: the gateway follows every shard's output stream; for each command it builds
  the execution reports with its own :class:`~tickline.stream.ReportBuilder` (deterministic:
  the engine's own numbers) and routes them through the router, and the submitter's reply
  is called only then — a client is acknowledged only after the shard engine processed the
  command from the log. Replies are released in submission order (several shards may answer
  out of order); queries and deferred commands wait for every command submitted before them.
* **market data**: every engine output is also fed to the gateway's own
  :class:`~tickline.stream.MarketDataPublisher` (``publisher``), so the WebSocket feeds,
  ``/book/<symbol>`` and FIX market data work as with one process; a gateway started from a
  snapshot seeds it from the snapshot's books. Per-topic sequence numbers are the
  gateway's own (a symbol lives on one shard, so its feed is in order with any number of
  shards); bars close on the engines' timestamps, which are per shard.
* **state**: ``reports`` mirrors the engines' report builders, ``engine.orders`` the live
  orders (cancel on disconnect), ``engine.last_seq`` the last sequence released. A gateway
  started while the cluster runs begins from shard 0's newest snapshot (one shard) or from
  the start of the output streams.

Limits of this version: with several shards, report numbers are per account *per shard
engine* and a gateway's mirror numbers them in the order it sees them, so resume across
gateways is exact only with one shard; resume older than the in-memory history is refused
(no journal on the gateway). A command spanning shards (an account status change, a mass
cancel of every symbol) is refused with several shards — a typed reject
``CROSS_SHARD_UNSUPPORTED`` (413), permanent, not the retryable 412 — except
``CancelOrders``, split per shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from tickline.cluster.errors import ClusterUnavailable
from tickline.cluster.jetstream import (
    DEDUP_WINDOW_S,
    Follower,
    connect,
    ensure_shard,
    follow,
    leader_kv,
    snapshot_store,
)
from tickline.cluster.node import leader_key, load_snapshot
from tickline.cluster.release import (
    Batch,
    Wait,
    answer,
    commands,
    publish_items,
    release,
    ticket,
    unseen,
    waits_for,
)
from tickline.cluster.shardmap import (
    ShardMap,
    in_subject,
    out_stream,
    out_subject,
)
from tickline.cluster.tasks import finish_within, stop_tasks
from tickline.cluster.wire import Logged, decode_output_rows, encode
from tickline.exchange import Exchange, ExchangeBusy, ExchangeStopped, Reply
from tickline.matching import (
    CancelOrders,
    Command,
    EngineConfig,
    Instrument,
    MatchingEngine,
    Rejected,
    RejectReason,
)
from tickline.stream import MarketDataPublisher
from tickline.stream.reports import ExecKind, ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort

log = logging.getLogger(__name__)

__all__ = ["ClusterExchange", "ClusterUnavailable"]


_CROSS_SHARD = int(RejectReason.CROSS_SHARD_UNSUPPORTED)
_EXEC_REJECTED = int(ExecKind.REJECTED)


_MAX_BATCH = 1024
"""Commands per input message at most (and fewer if it would exceed NATS max_payload)."""

_HOLD_S = 0.05
"""A shard's commands wait for one of its batches in flight to come back at most this long
after that batch was sent (:meth:`ClusterExchange._held_back`); past it they are published
anyway (a lost batch, a failover: the log keeps them, as without the window)."""


class ClusterExchange(Exchange):
    """A gateway's view of the cluster at ``url`` (``shards`` shards)."""

    def __init__(self, url: str, instruments: Iterable[Instrument], *,
                 engine_config: EngineConfig | None = None, shards: int = 1,
                 overrides: dict[str, int] | None = None, report_history: int = 4096,
                 max_pending: int = 65536, unavailable_after_s: float = 3.0,
                 lease_s: float = 1.0, replicas: int = 1,
                 resend_after_s: float = 3.0, batches_in_flight: int = 4) -> None:
        super().__init__(instruments, engine_config=engine_config, journal_dir=None,
                         report_history=report_history)
        self.url = url
        self.map = ShardMap(shards, overrides)
        self.gateway_id = uuid.uuid4().hex[:12]
        self.max_pending = max_pending
        self.unavailable_after_s = unavailable_after_s
        self.resend_after_s = resend_after_s
        self.batches_in_flight = batches_in_flight
        """Batches per shard on the way before new commands wait for one to come back
        (0: none wait, a message per loop turn). Measured (``tickline bench cluster --rate
        10000 --rate 30000``, 4 interleaved rounds): 0 / 1 / 4 in flight, 30,000/s offered
        achieved 23,855 / 28,301 / 29,521/s, p99 at 10,000/s 27.2 / 20.2 / 17.6 ms."""
        self._in_flight: list[deque[Batch]] = [deque() for _ in range(shards)]
        self._hold_timer: asyncio.TimerHandle | None = None
        self.held_back = 0
        self.lease_s = lease_s
        self.replicas = replicas
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self._ticket = 0
        self._mine: dict[int, Wait] = {}
        self._order: deque[Wait] = deque()
        self._to_publish: list[Wait] = []
        self._to_resend: list[Batch] = []
        self._batches: dict[int, Batch] = {}  # first ticket -> batch not fully released
        self._max_payload = 900_000
        self._publish_wake = asyncio.Event()
        self._applied = [0] * shards
        self._leader_seen = [time.monotonic()] * shards
        self._followers: list[Follower] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._closed_event = asyncio.Event()
        self.published = 0
        self.republished = 0
        self.released = 0
        self.unavailable = 0
        self.stale_outputs = 0
        self.cross_shard_refused = 0
        self._epochs = [0] * shards
        self._released_ticket = [0] * shards  # highest ticket of ours released, per shard
        self.batches = 0
        self._output_seen = [time.monotonic()] * shards
        self._use_mirror(ReportBuilder())

    def _use_mirror(self, builder: ReportBuilder) -> None:
        self.reports = builder
        # the live orders, for cancel on disconnect (VenueServices reads engine.orders)
        self.engine.orders = builder._orders  # type: ignore[assignment]

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the shards' streams if missing, catch up with the output streams
        and follow them."""
        self.nc = await connect(self.url, name=f"tickline-gateway-{self.gateway_id}")
        self._max_payload = int(self.nc.max_payload * 0.9)
        js = self.js = self.nc.jetstream()
        starts = [1] * self.map.shards
        for k in range(self.map.shards):
            await ensure_shard(js, k, replicas=self.replicas)
        if self.map.shards == 1:
            snap = await load_snapshot(await snapshot_store(js, replicas=self.replicas), 0)
            if snap is not None and snap.out_seq:
                engine = MatchingEngine(self.instruments, self.engine_config)
                engine.restore(snap.engine)
                self._use_mirror(ReportBuilder(engine.orders.values(),
                                               snap.engine.attachments.get(ReportBuilder.key)))
                # market data continues from the snapshot's books (no subscriber yet)
                self.publisher = MarketDataPublisher(self.bus, self.instruments,
                                                     books=engine.books)
                self._applied[0] = snap.seq
                starts[0] = snap.out_seq + 1
        caught_up = []
        for k in range(self.map.shards):
            info = await js.stream_info(out_stream(k))
            target = info.state.last_seq
            ev = asyncio.Event()
            if target < starts[k]:
                ev.set()
            caught_up.append(ev)
            self._followers.append(await follow(
                js, out_stream(k), out_subject(k), starts[k], self._output_handler(k, target, ev)))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in caught_up)), 60)
        self.engine.last_seq = sum(self._applied)
        kv = await leader_kv(js, lease_s=self.lease_s, replicas=self.replicas)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._publisher(), name="cluster-publisher"))
        self._tasks.append(loop.create_task(self._resender(), name="cluster-resender"))
        self._tasks.append(loop.create_task(self._watch_leaders(kv), name="cluster-leaders"))

    async def run(self) -> None:
        """Nothing to drive: the engines run elsewhere (kept for the server's lifecycle)."""
        await self._closed_event.wait()

    async def stop(self) -> None:
        """Wait (bounded) for what was submitted to be released, then disconnect."""
        self._stopping = True
        deadline = time.monotonic() + 10
        while self._order and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._closed = True
        self._closed_event.set()
        # bounded whatever the tasks do: one that loses its cancel in a request (the leader
        # watch polls the KV bucket every lease/4) is cancelled again (issue 12)
        await stop_tasks(*self._tasks, what="cluster gateway")
        for f in self._followers:
            await f.stop()
        if self.nc is not None:
            await finish_within(self.nc.close(), 5.0, "cluster gateway: closing NATS")

    def close(self) -> None:
        self._stopping = True
        self._closed = True
        self._closed_event.set()

    # -- availability ----------------------------------------------------------------------

    def _check_available(self, shard: int) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            self.unavailable += 1
            raise ClusterUnavailable("cluster unavailable: not connected to NATS")
        if time.monotonic() - self._leader_seen[shard] > self.unavailable_after_s:
            self.unavailable += 1
            raise ClusterUnavailable(f"cluster unavailable: shard {shard} has no engine leader")

    async def _watch_leaders(self, kv: Any) -> None:
        while True:
            for k in range(self.map.shards):
                try:
                    await kv.get(leader_key(k))
                    self._leader_seen[k] = time.monotonic()
                except NotFoundError:
                    pass
                except Exception:
                    log.debug("leader check failed", exc_info=True)
            await asyncio.sleep(min(0.25, self.lease_s / 4))

    # -- producer side ---------------------------------------------------------------------

    def _route(self, cmd: Command) -> list[tuple[int, Command]]:
        """The (shard, command) parts of ``cmd``; empty for a command spanning shards that
        cannot be split (refused :data:`_CROSS_SHARD`)."""
        shard = self.map.shard_of_command(cmd)
        if shard is not None:
            return [(shard, cmd)]
        if type(cmd) is CancelOrders:
            return list(self.map.split(cmd).items())
        return []

    def _refuse_cross_shard(self, cmd: Command, reply: Reply | None,
                            origin: ReportPort | None) -> None:
        """Answer ``cmd`` (spanning shards) with a typed reject, in its place among this
        gateway's replies: ``CROSS_SHARD_UNSUPPORTED`` (413), permanent — unlike 412 there
        is nothing to wait for. Never logged or sequenced (``seq`` 0, report number 0, like
        a gateway's own rejects); nothing changed."""
        self.cross_shard_refused += 1
        account = getattr(cmd, "account", 0)
        text = (f"{type(cmd).__name__} spans shards: not supported with "
                f"{self.map.shards} cluster shards (send it per symbol)")
        cmd.seq = 0
        w = Wait(0, cmd, reply, origin)
        w.events = [Rejected(account, "", "", 0, _CROSS_SHARD, text)]
        w.reports = [ExecReport(0, time.time_ns(), account, _EXEC_REJECTED, "", 0, "", 0, 0,
                                0, 0, reason=_CROSS_SHARD, text=text)]
        w.done = True
        self._order.append(w)
        self._release()

    def _enqueue(self, cmd: Command, reply: Reply | None, origin: ReportPort | None) -> None:
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        if len(self._order) >= self.max_pending:
            raise ExchangeBusy(f"inbound queue full ({len(self._order)} commands waiting)")
        parts = self._route(cmd)
        if not parts:
            self._refuse_cross_shard(cmd, reply, origin)
            return
        for shard, _ in parts:
            self._check_available(shard)
        last = len(parts) - 1
        for i, (shard, part) in enumerate(parts):
            w = Wait(0, part, reply if i == last else None, origin)
            w.shard = shard
            self._order.append(w)
            self._to_publish.append(w)
        self._publish_wake.set()

    def submit(self, cmd: Command, reply: Reply | None = None,
               origin: ReportPort | None = None) -> None:
        self._enqueue(cmd, reply, origin)

    def submit_many(self, cmds: Sequence[Command], reply: Reply | None = None,
                    origin: ReportPort | None = None) -> int:
        """:meth:`submit` each of ``cmds`` in order; returns how many were taken (a prefix:
        it stops at a full queue, or at an unavailable shard after the first). One shard
        (the usual gateway): one availability check per call and one wait per command,
        without the general routing (measured: the gateway's submit path was ~7% of its
        CPU at 20,000 orders/s)."""
        if self.map.shards != 1:
            n = 0
            for cmd in cmds:
                try:
                    self._enqueue(cmd, reply, origin)
                except ClusterUnavailable:
                    if n == 0:
                        raise
                    break
                except ExchangeBusy:
                    break
                n += 1
            return n
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        order = self._order
        room = self.max_pending - len(order)
        if room <= 0 or not cmds:
            return 0
        self._check_available(0)
        take = cmds if len(cmds) <= room else cmds[:room]
        waits_for(take, reply, origin, order, self._to_publish)
        self._publish_wake.set()
        return len(take)

    def submit_deferred(self, make: Callable[[], Command | None], reply: Reply | None = None,
                        origin: ReportPort | None = None) -> None:
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        w = Wait(0, None, reply, origin)
        w.make = make
        self._order.append(w)
        self._release()

    def query(self, ask: Callable[[], Any], reply: Callable[[Any], None]) -> None:
        if self._stopping:
            raise ExchangeStopped("the exchange is stopping")
        w = Wait(0, None, reply, None)
        w.ask = ask
        self._order.append(w)
        self._release()

    async def _publisher(self) -> None:
        """Append waiting commands to their input logs, in submission order: what was
        submitted for one shard since the last publish becomes ONE message (a batch, up to
        :data:`_MAX_BATCH` commands), so NATS, JetStream, the engines' consumers and this
        gateway's output path see one message per batch, not per command. Plain NATS
        publishes on the stream's subject (JetStream stores them, deduplicating by
        ``Nats-Msg-Id``), without a per-message acknowledgement: the confirmation that
        counts is the engine's output, and :meth:`_resender` re-sends (same bytes, same id,
        so never logged twice) a batch whose output has not come within ``resend_after_s``.
        Measured: the per-message JetStream acknowledgement was the gateway's largest cost,
        then the per-command publish.

        A shard takes a new batch only while fewer than ``batches_in_flight`` of its
        batches are on the way (published, no later one of them released; see
        :meth:`_held_back`): under load the commands of the next turns gather into one
        message while the engine works (the batch grows with the load, and is one command
        when idle), instead of a message per loop turn — per message, every process of the
        cluster pays far more than per command."""
        assert self.nc is not None
        nc = self.nc
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            resend, self._to_resend = self._to_resend, []
            now = time.monotonic()
            for b in resend:
                if b.left:
                    b.sent = now
                    await nc.publish(in_subject(b.shard), b.payload,
                                     headers={"Nats-Msg-Id": b.msg_id})
            fresh, self._to_publish = self._to_publish, []
            if not fresh:
                continue
            now = time.monotonic()
            if self.map.shards == 1:
                if self._held_back(0, now):
                    self._to_publish = fresh  # nothing was added: no await since taken
                    continue
                groups = [fresh]
            else:
                by_shard: dict[int, list[Wait]] = {}
                for w in fresh:
                    by_shard.setdefault(w.shard, []).append(w)
                groups = []
                held: list[Wait] = []
                for k, group in by_shard.items():
                    if self._held_back(k, now):
                        held.extend(group)
                    else:
                        groups.append(group)
                self._to_publish = held  # before any await: order kept per shard
            for group in groups:
                for i in range(0, len(group), _MAX_BATCH):
                    for b in self._make_batches(group[i:i + _MAX_BATCH]):
                        self._in_flight[b.shard].append(b)
                        await nc.publish(in_subject(b.shard), b.payload,
                                         headers={"Nats-Msg-Id": b.msg_id})
                self.published += len(group)

    def _held_back(self, shard: int, now: float) -> bool:
        """Whether ``shard``'s waiting commands wait for a batch of it to come back first:
        ``batches_in_flight`` of its batches are on the way — published, and no batch
        published after them released yet (one connection keeps order, so a batch that a
        later one overtook was lost: the resender's business, not counted) — and the
        oldest of them was sent less than :data:`_HOLD_S` ago (a slow or absent leader
        does not hold the commands here: they go on to the log as before). A held
        publisher is woken by the shard's next release, or at the bound."""
        window = self.batches_in_flight
        if not window:
            return False
        flight = self._in_flight[shard]
        released = self._released_ticket[shard]
        while flight and (flight[0].last <= released or not flight[0].left):
            flight.popleft()
        if len(flight) < window:
            return False
        wait = flight[0].sent + _HOLD_S - now
        if wait <= 0:
            return False
        if self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_later(wait, self._hold_over)
        self.held_back += 1
        return True

    def _hold_over(self) -> None:
        self._hold_timer = None
        self._publish_wake.set()

    def _make_batches(self, waits: list[Wait]) -> list[Batch]:
        """Ticket ``waits`` (one shard's, in order) and encode them as one batch, or as
        several when one would exceed NATS max_payload."""
        ts = time.time_ns()
        payload = encode(Logged(self.gateway_id, self._ticket + 1, ts, commands(waits)))
        if len(payload) > self._max_payload and len(waits) > 1:
            half = len(waits) // 2
            return self._make_batches(waits[:half]) + self._make_batches(waits[half:])
        first = self._ticket + 1
        self._ticket += len(waits)
        b = Batch(first, self._ticket, waits[0].shard, payload, f"{self.gateway_id}:{first}")
        ticket(waits, first, b, self._mine)
        self._batches[first] = b
        self.batches += 1
        return [b]

    async def _resender(self) -> None:
        """Re-send batches that were lost, never ones that are merely slow (re-sending
        everything late would feed an overload): a batch is re-sent when a command this
        gateway sent *after* it to the same shard has been released (one connection keeps
        order, so it was dropped), or when its shard has released nothing at all for
        ``resend_after_s`` (a reconnect lost everything in flight) — the oldest 1,000 —
        and only within JetStream's duplicate window, so never logged twice. A batch is
        re-sent whole (same bytes, same ``Nats-Msg-Id``), even when a part of it was
        released: JetStream logged all of it or none of it."""
        while True:
            await asyncio.sleep(self.resend_after_s / 2)
            now = time.monotonic()
            late = []
            for b in self._batches.values():
                if now - b.sent <= self.resend_after_s:
                    continue
                if now - b.first_sent >= DEDUP_WINDOW_S * 0.8:
                    continue
                k = b.shard
                if (b.last < self._released_ticket[k]
                        or now - self._output_seen[k] > self.resend_after_s):
                    late.append(b)
                    if len(late) >= 1000:
                        break
            if late and self.nc is not None and self.nc.is_connected:
                self.republished += sum(b.last - b.ticket + 1 for b in late)
                log.warning("re-sending %d batches that were lost", len(late))
                self._to_resend.extend(late)
                self._publish_wake.set()

    # -- release ---------------------------------------------------------------------------

    def _output_handler(self, shard: int, catch_up_to: int, caught_up: asyncio.Event) -> Any:
        async def handle(items: list[tuple[int, bytes]]) -> None:
            for out_seq, data in items:
                self._on_output(shard, data)
                if out_seq >= catch_up_to:
                    caught_up.set()
        return handle

    def _on_output(self, shard: int, data: bytes) -> None:
        """One output message of ``shard``: market data, then per command (compiled:
        :func:`tickline.cluster.release.release`) its reports built, recorded and routed
        and the oldest submissions answered; then whatever that unblocked."""
        epoch, _, rows = decode_output_rows(data)
        self._output_seen[shard] = time.monotonic()
        if epoch < self._epochs[shard]:
            self.stale_outputs += 1  # a fenced-off leader's (cannot normally land)
        self._epochs[shard] = max(self._epochs[shard], epoch)
        applied = self._applied[shard]
        fresh = unseen(rows, applied)  # a takeover re-publishes: drop the known
        if fresh:
            try:  # market data first, as the one-process exchange does
                self.publisher.publish_batch(publish_items(fresh))
            except Exception:
                log.exception("market data publish failed for shard %d", shard)
            applied = fresh[-1][2].seq  # in order: the last is the highest
        # the mirror's position first: the replies below may run before the batch ends
        self._applied[shard] = applied
        self.engine.last_seq = sum(self._applied)
        self.commands += len(rows)
        self._released_ticket[shard], answered = release(
            fresh, self.gateway_id, self._mine, self._order, self._batches, self.reports,
            self.history, self.router, self._released_ticket[shard])
        self.released += answered
        if self._to_publish:  # held back behind this shard's batches in flight
            self._publish_wake.set()
        self._release()

    def _release(self) -> None:
        order = self._order
        while order:
            w = order[0]
            if w.ask is not None:
                order.popleft()
                try:
                    w.reply(w.ask())
                except Exception:
                    log.exception("query failed")
                continue
            if w.make is not None:
                order.popleft()
                made = w.make()
                if made is not None:
                    with contextlib.suppress(ExchangeBusy, ExchangeStopped):
                        self._enqueue(made, w.reply, w.origin)
                continue
            if not w.done:
                return
            order.popleft()
            self.released += 1
            answer(w, w.cmd, w.events, w.reports)

    # -- observability ---------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {"gateway": self.gateway_id, "shards": self.map.shards,
                "applied": list(self._applied), "epochs": list(self._epochs),
                "published": self.published, "republished": self.republished,
                "batches": self.batches, "held_back": self.held_back,
                "released": self.released, "waiting": len(self._order),
                "unavailable": self.unavailable, "stale_outputs": self.stale_outputs,
                "cross_shard_refused": self.cross_shard_refused,
                "reports": {"built": self.reports.reports, **self.router.statistics()}}
