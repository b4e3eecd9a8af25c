"""JetStream plumbing for cluster mode: the streams, buckets and the two ordered readers.

Per shard ``k``:

* ``TL_IN_k`` (subject ``tickline.in.k``) — the input log. Limits retention, file storage,
  duplicate window :data:`DEDUP_WINDOW_S` (``Nats-Msg-Id`` dedup of re-published batches).
  One message is a batch of commands; a command's sequence number is its place among all the
  commands of the stream (:class:`~tickline.cluster.replica.Replica`).
* ``TL_OUT_k`` (subject ``tickline.out.k``) — the engine output; only a leader writes, each
  publish with ``Nats-Expected-Last-Sequence`` (a stale writer is refused).

Shared: KV bucket ``TL_LEADER`` (one key per shard, bucket TTL = the leadership lease) and the
object store ``TL_SNAP`` (one object per shard: the newest snapshot).

:func:`follow` reads a stream in order from a given sequence (an ephemeral push consumer,
recreated on a gap) and hands the messages to a callback in natural batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from tickline.cluster.shardmap import in_stream, in_subject, out_stream, out_subject
from tickline.cluster.tasks import finish_within, stop_tasks

log = logging.getLogger(__name__)

__all__ = ["DEDUP_WINDOW_S", "LEADER_BUCKET", "SNAP_BUCKET", "Follower", "connect",
           "ensure_shard", "follow", "leader_kv", "snapshot_store", "stream_seq"]

DEDUP_WINDOW_S = 120.0
LEADER_BUCKET = "TL_LEADER"
SNAP_BUCKET = "TL_SNAP"


async def connect(url: str, *, name: str = "tickline", **kw: Any) -> Client:
    """Connect to NATS at ``url`` (comma-separated for a cluster), reconnecting for ever."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    return await nats.connect(servers=servers, name=name, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, connect_timeout=2, **kw)


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except NotFoundError:
        with contextlib.suppress(nats.js.errors.BadRequestError):  # created concurrently
            await js.add_stream(config)


async def ensure_shard(js: JetStreamContext, shard: int, *, replicas: int = 1) -> None:
    """Create shard ``shard``'s input and output streams if missing (idempotent)."""
    await _ensure_stream(js, api.StreamConfig(
        name=in_stream(shard), subjects=[in_subject(shard)], storage=api.StorageType.FILE,
        num_replicas=replicas, duplicate_window=DEDUP_WINDOW_S))
    await _ensure_stream(js, api.StreamConfig(
        name=out_stream(shard), subjects=[out_subject(shard)], storage=api.StorageType.FILE,
        num_replicas=replicas, duplicate_window=0))


async def leader_kv(js: JetStreamContext, *, lease_s: float, replicas: int = 1) -> KeyValue:
    """The leadership bucket (created with TTL ``lease_s`` when missing: an unrenewed key
    expires, freeing leadership)."""
    try:
        return await js.key_value(LEADER_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=LEADER_BUCKET, ttl=lease_s, history=1,
                                         replicas=replicas)


async def snapshot_store(js: JetStreamContext, *, replicas: int = 1) -> ObjectStore:
    try:
        return await js.object_store(SNAP_BUCKET)
    except BucketNotFoundError:
        return await js.create_object_store(SNAP_BUCKET, config=api.ObjectStoreConfig(
            bucket=SNAP_BUCKET, replicas=replicas))


def stream_seq(reply: str | None) -> int:
    """The stream sequence in a JetStream message's reply subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``,
    or the 12-token form with domain and account hash); 0 when it is not one. What
    ``Msg.metadata`` does for this one number, without building the whole metadata (with
    its datetime): measured 0.5 vs 11.7 µs per message, paid by every node and gateway for
    every message they follow."""
    if not reply:
        return 0
    tokens = reply.split(".")
    n = len(tokens)
    if tokens[0] != "$JS" or n < 9 or tokens[1] != "ACK":
        return 0
    try:
        return int(tokens[5] if n == 9 else tokens[7]) if n == 9 or n >= 11 else 0
    except ValueError:
        return 0


class Follower:
    """A stream reader: a task and its current subscription; :meth:`stop` ends both."""

    def __init__(self, name: str = "follower") -> None:
        self.name = name
        self.sub: Any = None
        self.task: asyncio.Task[None] | None = None
        self.watchdog: asyncio.Task[None] | None = None
        self.resets = 0

    async def stop(self, timeout: float = 5.0) -> None:
        """End the reader and its watchdog, then drop the subscription, in bounded time
        whatever they are doing: the reader may be inside a request (``stream_info``,
        resubscribing) that loses its cancel — :func:`~tickline.cluster.tasks.stop_tasks`
        cancels again until it is done (issue 12: awaiting it once waited for ever)."""
        await stop_tasks(self.watchdog, self.task, timeout=timeout, what=self.name)
        if self.sub is not None:
            await finish_within(self.sub.unsubscribe(), 2.0, f"{self.name}: unsubscribe")


_WAKE: Any = object()
"""Put into a follower's queue by its watchdog: wakes the reader to check the stream."""


async def follow(js: JetStreamContext, stream: str, subject: str, start_seq: int,
                 handle: Callable[[list[tuple[int, bytes]]], Awaitable[None]],
                 *, max_batch: int = 4096, silence_s: float = 5.0) -> Follower:
    """Deliver ``stream``'s messages from sequence ``start_seq`` on, in order, to
    ``handle([(stream_seq, data), ...])`` in natural batches: whatever has arrived, up to
    ``max_batch``. ``handle`` runs on one task (never concurrently with itself).

    An ephemeral push consumer without acknowledgements or flow control (nats-py answers a
    flow-control request only every 250 ms when the application drains its queue itself,
    which stalls a busy stream); order is checked here instead: a gap (a message lost to a
    slow-consumer drop or a reconnect) or a stream that is ahead of a silent reader recreates
    the consumer from the next expected sequence.

    Silence is checked by a watchdog task every ``silence_s`` (nothing taken from the
    queue since its last look: it wakes the reader, which asks the stream whether it is
    behind), not by a timeout around every wait for the queue: ``asyncio.wait_for`` costs
    a task and a timer per wait — measured ~12 µs per natural batch under uvloop, paid by
    every engine node and gateway for every batch they follow. The consumer's idle
    heartbeats never reach the queue (nats-py keeps control messages to itself), so an idle
    stream's reader asks every ``silence_s`` — which also finds a tail lost in a
    reconnect while nothing new arrives. That request is one a stop may catch in flight:
    :meth:`Follower.stop` is bounded all the same."""
    follower = Follower(f"follow-{stream}")
    state = {"next": max(1, start_seq), "taken": 0}

    async def subscribe() -> asyncio.Queue[Msg]:
        if follower.sub is not None:
            with contextlib.suppress(Exception):
                await follower.sub.unsubscribe()
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=state["next"],
            ack_policy=api.AckPolicy.NONE, flow_control=False, inactive_threshold=30.0,
            idle_heartbeat=1.0)
        follower.sub = await js.subscribe(subject, stream=stream, config=config,
                                          manual_ack=True, pending_msgs_limit=1 << 20,
                                          pending_bytes_limit=1 << 30)
        queue: asyncio.Queue[Msg] = follower.sub._pending_queue
        return queue

    queue = await subscribe()

    async def resubscribe() -> None:
        """A new consumer from the next expected sequence. If that fails (NATS reconnecting,
        JetStream slow to answer) the reader lives on: the stream is ahead of it, so the
        watchdog's next wake tries again (an exception here used to end the reader for
        good: nothing followed the stream any more, silently)."""
        nonlocal queue
        follower.resets += 1
        try:
            queue = await subscribe()
        except Exception as e:
            log.warning("%s: resubscribing from %d failed (%r); retrying in %.1f s", stream,
                        state["next"], e, silence_s)

    async def watchdog() -> None:
        seen = -1
        while True:
            await asyncio.sleep(silence_s)
            taken = state["taken"]
            if taken == seen:  # silent for a whole period: let the reader check
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(_WAKE)
            seen = taken

    async def pump() -> None:
        nonlocal queue
        while True:
            try:
                msg = queue.get_nowait()
            except asyncio.QueueEmpty:
                msg = await queue.get()
            if msg is _WAKE:  # the watchdog: no message for a while (idle, or lost)
                try:
                    info = await js.stream_info(stream)
                except Exception:
                    continue
                if info.state.last_seq >= state["next"]:  # silent but behind: resubscribe
                    await resubscribe()
                continue
            state["taken"] += 1
            batch = [msg]
            while len(batch) < max_batch:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            items: list[tuple[int, bytes]] = []
            gap = False
            for m in batch:
                if m is _WAKE:
                    continue  # the watchdog's, while messages flow: nothing to check
                follower.sub._pending_size -= len(m.data)
                seq = stream_seq(m.reply)
                if not seq:
                    continue  # not a stream message (a heartbeat or a status)
                if seq < state["next"]:
                    continue  # a duplicate after a resubscribe
                if seq > state["next"]:
                    gap = True
                    break
                items.append((seq, m.data))
                state["next"] = seq + 1
            if items:
                try:
                    await handle(items)
                except Exception:  # the reader must outlive one bad batch
                    log.exception("%s: handling messages up to %d failed", stream,
                                  state["next"] - 1)
                if not queue.empty():
                    await asyncio.sleep(0)  # let the other tasks run between batches
            if gap:
                log.warning("%s: gap before %d; resubscribing", stream, state["next"])
                await resubscribe()

    loop = asyncio.get_running_loop()
    follower.task = loop.create_task(pump(), name=f"follow-{stream}")
    follower.watchdog = loop.create_task(watchdog(), name=f"follow-watchdog-{stream}")
    return follower


async def log_command(js: JetStreamContext, shard: int, payload: bytes, msg_id: str,
                      *, timeout: float = 2.0) -> api.PubAck:
    """Append one encoded :class:`~tickline.cluster.wire.Logged` (a batch of commands) to
    shard ``shard``'s input log, awaiting JetStream's acknowledgement. ``msg_id``
    (``<gateway>:<first ticket>``) makes a re-publish within the duplicate window a no-op:
    the answer then has ``duplicate=True`` and the first copy's sequence."""
    return await js.publish(in_subject(shard), payload, timeout=timeout,
                            stream=in_stream(shard), headers={"Nats-Msg-Id": msg_id})
