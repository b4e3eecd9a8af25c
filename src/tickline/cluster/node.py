"""The engine process of one shard in cluster mode: leader or standby (``tickline
cluster-engine``).

Every node follows the shard's input stream from its newest snapshot on, in order, and applies
it to its :class:`~tickline.cluster.replica.Replica` — leader and standbys alike, so a standby
holds the leader's exact state (``digest`` on ``/health`` of the gateway, in tests). Only the
leader publishes :class:`~tickline.cluster.wire.Output` on the output stream, from its own
task (natural batches: whatever was applied while the previous output message waited for its
acknowledgement, up to 1,024 commands).

Leadership is a key (``shard-<k>``) in the KV bucket ``TL_LEADER``, whose TTL is the lease:

* a standby tries ``create`` every ``lease_s / 4`` (succeeds only when the key is absent:
  never held, or expired because its leader stopped renewing); the revision it gets is its
  **epoch**, carried in every message it publishes;
* the leader renews with ``update(last=revision)`` every ``lease_s / 4`` (a publish renews
  first only when that is late: older than 3/8 of the lease); a failed renewal (the key
  expired and someone else created it) makes it a standby at once;
* a leader publishes only while its last renewal is younger than ``lease_s / 2`` by its own
  monotonic clock — a leader frozen by SIGSTOP (or cut off from NATS) for longer stops
  publishing before it can learn it lost the key;
* writes are **fenced**: every publish carries ``Nats-Expected-Last-Sequence`` of the output
  stream as this node last saw it, so after a takeover a stale leader's publish is refused by
  the server (and the stale node steps down).

Takeover: the new leader reads the output stream's last message (the last command sequence
number published, ``P``) and publishes what it applied after ``P`` — it kept those results (a
standby trims what it holds to what the leader already published, checked each lease tick),
so an input the old leader applied but never published is not lost, and none is published
twice (gateways also drop a sequence they already have).

Snapshots (every ``snapshot_every`` commands, by the leader): the replica's state with its
input sequence and the output stream sequence, as object ``shard-<k>`` of the object store
``TL_SNAP``. A node (or a gateway) starts from the newest snapshot plus the streams' tails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from tickline.cluster.jetstream import (
    Follower,
    connect,
    ensure_shard,
    follow,
    leader_kv,
    log_command,
    snapshot_store,
)
from tickline.cluster.publish import AckedPublisher
from tickline.cluster.replica import Replica
from tickline.cluster.shardmap import in_stream, in_subject, out_stream, out_subject
from tickline.cluster.tasks import finish_within, stop_tasks
from tickline.cluster.wire import (
    Done,
    Logged,
    Output,
    decode_logged,
    decode_output,
    decode_snapshot,
    encode,
)
from tickline.matching import EngineConfig, Instrument, TimeTick

log = logging.getLogger(__name__)

__all__ = ["EngineNode", "last_published", "load_snapshot"]

_WRONG_LAST_SEQUENCE = 10071
_RENEW_INLINE = 3 / 8
"""A publish renews the lease itself first only when the last renewal is older than this
(in leases): the lease loop renews every lease/4, so a publish that renewed at lease/4 (as
before) raced the loop's timer and, under load, waited for a KV round trip about a quarter
of the loop's renewals (measured at 5,000/s, load 9.5: 15 of 56 renewals, 0.53 s of output
stalled over the run; at 3/8: 2, 0.13 s). Publishing still needs a renewal younger than
lease/2 (:meth:`EngineNode.lease_valid`), so the fencing is unchanged."""
_MAX_OUTPUT_COMMANDS = 1024
"""Commands per output message at most (and fewer if it would exceed NATS max_payload)."""


def leader_key(shard: int) -> str:
    return f"shard-{shard}"


def snapshot_name(shard: int) -> str:
    return f"shard-{shard}"


async def load_snapshot(store: ObjectStore, shard: int) -> Any:
    """The newest :class:`~tickline.cluster.wire.Snapshot` of ``shard``, or None."""
    try:
        result = await store.get(snapshot_name(shard))
    except (NotFoundError, KeyNotFoundError):
        return None
    except Exception as e:  # nats-py raises ObjectNotFoundError from its own module
        if "not found" in str(e).lower() or type(e).__name__ == "ObjectNotFoundError":
            return None
        raise
    return decode_snapshot(result.data or b"")


async def last_published(js: JetStreamContext, shard: int) -> tuple[int, int]:
    """``(output stream last sequence, last command sequence published in it)``; (0, 0) when
    nothing has been published yet."""
    info = await js.stream_info(out_stream(shard))
    out_seq = info.state.last_seq
    if not out_seq or not info.state.messages:
        return out_seq, 0
    msg = await js.get_msg(out_stream(shard), out_seq)
    out = decode_output(msg.data or b"")
    return out_seq, out.done[-1].cmd.seq if out.done else 0


class EngineNode:
    """One engine process of shard ``shard``: follows the input, leads when it can."""

    def __init__(self, url: str, instruments: Iterable[Instrument],
                 engine_config: EngineConfig | None = None, *, shard: int = 0,
                 node_id: str | None = None, lease_s: float = 1.0, snapshot_every: int = 0,
                 replicas: int = 1, standby_only: bool = False) -> None:
        self.url = url
        self.instruments = list(instruments)
        self.engine_config = engine_config or EngineConfig()
        self.shard = shard
        self.node_id = node_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        self.snapshot_every = snapshot_every
        self.replicas = replicas
        self.standby_only = standby_only
        self.replica = Replica(self.instruments, self.engine_config, shard=shard)
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.kv: KeyValue | None = None
        self.store: ObjectStore | None = None
        self._output: AckedPublisher | None = None
        self._follower: Follower | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._publish_wake = asyncio.Event()
        self._unpublished: deque[Done] = deque()
        self._publish_lock = asyncio.Lock()
        self._renew_lock = asyncio.Lock()
        self.leader = False
        self.epoch = 0
        self._revision = 0
        self._renewed = 0.0
        self.out_seq = 0
        self.published_seq = 0  # the last command sequence known to be in the output stream
        self._since_snapshot = 0
        self.snapshots = 0
        self.fenced = 0
        self.takeovers = 0
        self.renewals = 0
        self._ticked = 0
        self._max_payload = 900_000
        self.became_leader = asyncio.Event()
        self.started_from: int = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.nc = await connect(self.url, name=f"tickline-engine-{self.shard}-{self.node_id}")
        self._max_payload = int(self.nc.max_payload * 0.9)
        js = self.js = self.nc.jetstream()
        self._output = AckedPublisher(self.nc)
        await self._output.start()
        await ensure_shard(js, self.shard, replicas=self.replicas)
        self.kv = await leader_kv(js, lease_s=self.lease_s, replicas=self.replicas)
        self.store = await snapshot_store(js, replicas=self.replicas)
        snap = await load_snapshot(self.store, self.shard)
        if snap is not None:
            self.replica = Replica.from_snapshot(snap, self.instruments, self.engine_config)
            self.published_seq = snap.seq
            log.info("shard %d: from snapshot at seq %d", self.shard, snap.seq)
        self.started_from = self.replica.seq
        self._follower = await follow(js, in_stream(self.shard), in_subject(self.shard),
                                      self.replica.in_seq + 1, self._on_input)
        loop = asyncio.get_running_loop()
        self._publisher_task = loop.create_task(self._publisher(),
                                                name=f"publish-{self.shard}")
        await self._lease_tick()
        self._lease_task = loop.create_task(self._lease_loop())

    async def stop(self) -> None:
        """Stop following and leading; the key is deleted so a standby takes over at once
        (when connected: while NATS is unreachable the delete could only time out, and
        the key expires with the lease anyway). Bounded whatever the tasks do: a lease
        renewal or an output publish that loses its cancel is cancelled again (issue 12)."""
        what = f"shard {self.shard} node {self.node_id}"
        await stop_tasks(self._lease_task, self._publisher_task, what=what)
        if self._follower is not None:
            await self._follower.stop()
        nc = self.nc
        if self.leader and self.kv is not None and nc is not None and nc.is_connected:
            await finish_within(self.kv.delete(leader_key(self.shard), last=self._revision),
                                2.0, f"{what}: giving up the leader key")
        self.leader = False
        if nc is not None:
            await finish_within(nc.close(), 5.0, f"{what}: closing NATS")

    # -- input -----------------------------------------------------------------------------

    async def _on_input(self, items: list[tuple[int, bytes]]) -> None:
        replica = self.replica
        unpublished = self._unpublished
        published = self.published_seq
        before = replica.seq
        for in_seq, data in items:
            if in_seq <= replica.in_seq:
                continue  # redelivered after a consumer reset
            if in_seq != replica.in_seq + 1:
                log.error("shard %d: input gap %d -> %d", self.shard, replica.in_seq, in_seq)
            try:
                logged = decode_logged(data)
            except msgspec.DecodeError:  # every replica skips it alike: no command, no seq
                log.error("shard %d: input %d is not a command batch; skipped", self.shard,
                          in_seq)
                replica.skip(in_seq)
                continue
            done = replica.apply(in_seq, logged)
            if done and done[-1].cmd.seq > published:
                if done[0].cmd.seq > published:
                    unpublished.extend(done)
                else:  # a node catching up: part of it is already in the output
                    unpublished.extend(d for d in done if d.cmd.seq > published)
        self._since_snapshot += replica.seq - before
        if self.leader:
            self._publish_wake.set()  # the publisher task; this reader goes on applying
        else:
            while len(unpublished) > 1_000_000:  # a standby whose leader publishes nothing
                unpublished.popleft()

    async def _publisher(self) -> None:
        """The leader's output, on its own task: while one output message waits for its
        JetStream acknowledgement, the reader applies the next input, and the next output
        message carries everything applied meanwhile (natural batches; the fencing is
        unchanged: one publish at a time, each expecting the last sequence)."""
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            if not self.leader or not self._unpublished:
                continue
            try:
                await self._publish()
                if self.snapshot_every and self._since_snapshot >= self.snapshot_every:
                    await self.snapshot()
            except Exception:  # kept unpublished: the next lease tick publishes them
                log.exception("shard %d: publishing failed", self.shard)

    def lease_valid(self) -> bool:
        return self.leader and time.monotonic() - self._renewed < self.lease_s / 2

    async def _publish(self) -> None:
        async with self._publish_lock:
            while self._unpublished and self.leader:
                if time.monotonic() - self._renewed > self.lease_s * _RENEW_INLINE:
                    await self._renew()  # the lease loop is late (a busy loop): renew here
                if not self.lease_valid():
                    log.warning("shard %d: lease not renewed for %.2fs; not publishing",
                                self.shard, time.monotonic() - self._renewed)
                    return
                batch = list(itertools.islice(self._unpublished, _MAX_OUTPUT_COMMANDS))
                payload = encode(Output(self.epoch, self.shard, batch))
                while len(payload) > self._max_payload and len(batch) > 1:
                    batch = batch[:len(batch) // 2]  # one NATS message: below max_payload
                    payload = encode(Output(self.epoch, self.shard, batch))
                assert self._output is not None
                try:
                    out_seq = await self._output.publish(
                        out_subject(self.shard), payload,
                        stream=out_stream(self.shard), timeout=2.0,
                        headers={"Nats-Expected-Last-Sequence": str(self.out_seq)})
                except APIError as e:
                    if getattr(e, "err_code", None) == _WRONG_LAST_SEQUENCE:
                        self.fenced += 1
                        log.warning("shard %d: output fenced (another writer); resyncing",
                                    self.shard)
                        await self._resync_output()
                        continue
                    raise
                self.out_seq = out_seq
                self.published_seq = batch[-1].cmd.seq
                for _ in range(len(batch)):
                    self._unpublished.popleft()

    async def _resync_output(self) -> None:
        """Learn what the output stream holds; drop the results already in it. If the
        stream's writer is not this node (its key is gone or someone else's), step down."""
        assert self.js is not None
        self.out_seq, self.published_seq = await last_published(self.js, self.shard)
        self._trim()
        if not await self._holds_key():
            self._step_down("another node holds the key")

    def _trim(self) -> None:
        unpublished = self._unpublished
        while unpublished and unpublished[0].cmd.seq <= self.published_seq:
            unpublished.popleft()

    async def snapshot(self) -> None:
        """Write the replica's state now (between batches) as the shard's newest snapshot."""
        assert self.store is not None
        self._since_snapshot = 0
        snap = self.replica.snapshot(self.out_seq if not self._unpublished else 0)
        await self.store.put(snapshot_name(self.shard), encode(snap))
        self.snapshots += 1

    # -- leadership ------------------------------------------------------------------------

    async def _holds_key(self) -> bool:
        assert self.kv is not None
        try:
            entry = await self.kv.get(leader_key(self.shard))
        except NotFoundError:  # absent, expired or deleted
            return False
        return entry.value == self.node_id.encode() and entry.revision == self._revision

    def _step_down(self, why: str) -> None:
        if self.leader:
            log.warning("shard %d: node %s steps down: %s", self.shard, self.node_id, why)
        self.leader = False
        self.became_leader.clear()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 4)
            try:
                await self._lease_tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("shard %d: lease tick failed", self.shard)

    async def _renew(self) -> None:
        """Renew the lease (``update`` at the revision this node wrote last); step down when
        it is refused (the key expired: someone else may hold it) or came too late."""
        assert self.kv is not None
        if self._renew_lock.locked():  # one renewal at a time: both would send one revision
            async with self._renew_lock:
                return
        async with self._renew_lock:
            if time.monotonic() - self._renewed >= self.lease_s:
                self._step_down("lease expired before it could be renewed")
                return
            started = time.monotonic()
            try:
                self._revision = await self.kv.update(
                    leader_key(self.shard), self.node_id.encode(), last=self._revision)
            except (KeyWrongLastSequenceError, APIError) as e:
                self._step_down(f"renewal refused: {e}")
                return
            self._renewed = started
        self.renewals += 1
        took = time.monotonic() - started
        if took > self.lease_s / 8:
            log.warning("shard %d: lease renewal took %.3fs", self.shard, took)

    async def _lease_tick(self) -> None:
        assert self.kv is not None and self.js is not None
        key = leader_key(self.shard)
        if self.leader:
            if time.monotonic() - self._renewed > self.lease_s / 8:
                await self._renew()
            if self.leader:
                if self._unpublished and not self._publish_lock.locked():
                    await self._publish()  # held back while the lease was in doubt
                await self._tick_expiry()
                return
        if self.standby_only:
            return
        # a standby: trim what the leader already published, then try to take the key
        with contextlib.suppress(Exception):
            self.out_seq, self.published_seq = await last_published(self.js, self.shard)
            self._trim()
        try:
            started = time.monotonic()
            revision = await self.kv.create(key, self.node_id.encode())
        except (KeyWrongLastSequenceError, APIError):
            return
        self._revision = self.epoch = revision
        self._renewed = started
        await self._take_over()

    async def _tick_expiry(self) -> None:
        """GTD expiry while no command arrives: the leader logs a ``TimeTick`` once the
        earliest expiry is due (checked every lease tick), so every replica expires the
        order at the same place in the log. Its ``Nats-Msg-Id`` names the due time: two
        leaders around a takeover log it once."""
        due = self.replica.engine.next_expiry
        now = time.time_ns()
        if due is None or due > now or due == self._ticked:
            return
        assert self.js is not None
        self._ticked = due
        payload = encode(Logged(f"engine:{self.node_id}", 0, now, [TimeTick()]))
        with contextlib.suppress(Exception):
            await log_command(self.js, self.shard, payload, f"tick:{self.shard}:{due}")

    async def _take_over(self) -> None:
        assert self.js is not None
        self.out_seq, self.published_seq = await last_published(self.js, self.shard)
        self._trim()
        first = self._unpublished[0].cmd.seq if self._unpublished else self.replica.seq + 1
        if self.replica.seq > self.published_seq and first > self.published_seq + 1:
            # cannot happen while the standby keeps up (it trims only what is published)
            log.error("shard %d: results %d..%d missing; not leading", self.shard,
                      self.published_seq + 1, first - 1)
            with contextlib.suppress(Exception):
                assert self.kv is not None
                await self.kv.delete(leader_key(self.shard), last=self._revision)
            return
        self.leader = True
        self.takeovers += 1
        log.info("shard %d: node %s leads (epoch %d) from input seq %d", self.shard,
                 self.node_id, self.epoch, self.published_seq)
        self.became_leader.set()
        await self._publish()

    def status(self) -> dict[str, Any]:
        return {"shard": self.shard, "node": self.node_id, "leader": self.leader,
                "epoch": self.epoch, "seq": self.replica.seq, "digest": self.replica.digest(),
                "published_seq": self.published_seq, "out_seq": self.out_seq,
                "unpublished": len(self._unpublished), "snapshots": self.snapshots,
                "fenced": self.fenced, "takeovers": self.takeovers,
                "started_from": self.started_from}
