"""The stream reader (:func:`~tickline.cluster.jetstream.follow`) on a real nats-server:
in order from the start sequence, in natural batches, and a consumer lost on the server
(silence: not even heartbeats) is noticed by the watchdog and recreated from the next
expected sequence, without losing or repeating a message."""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
from nats.js import JetStreamContext

from tickline.cluster.jetstream import connect, ensure_shard, follow
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.shardmap import in_stream, in_subject


async def _publish(js: JetStreamContext, first: int, n: int) -> None:
    for i in range(first, first + n):
        await js.publish(in_subject(0), str(i).encode(), stream=in_stream(0))


def test_lost_consumer_is_recreated_from_the_next_sequence(nats_server: NatsServer) -> None:
    async def main() -> None:
        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            await ensure_shard(js, 0)
            await _publish(js, 1, 5)
            got: list[tuple[int, bytes]] = []
            calls = 0

            async def handle(items: list[tuple[int, bytes]]) -> None:
                nonlocal calls
                calls += 1
                got.extend(items)

            f = await follow(js, in_stream(0), in_subject(0), 3, handle, silence_s=0.3)
            try:
                for _ in range(100):
                    if len(got) == 3:
                        break
                    await asyncio.sleep(0.02)
                assert got == [(3, b"3"), (4, b"4"), (5, b"5")]
                # the server forgets the consumer: no messages, no heartbeats
                await js.delete_consumer(in_stream(0), f.sub._consumer)
                await asyncio.sleep(0.1)
                await _publish(js, 6, 4)
                for _ in range(300):
                    if len(got) == 7:
                        break
                    await asyncio.sleep(0.02)
                assert [seq for seq, _ in got] == [3, 4, 5, 6, 7, 8, 9]
                assert [data for _, data in got[3:]] == [b"6", b"7", b"8", b"9"]
                assert f.resets >= 1
                assert calls <= len(got)
            finally:
                await f.stop()
            assert f.task is not None and f.task.done()
            assert f.watchdog is not None and f.watchdog.done()
        finally:
            await nc.close()

    asyncio.run(main())


def test_a_failed_resubscribe_is_retried(nats_server: NatsServer) -> None:
    """Recreating the consumer fails once (NATS reconnecting, JetStream slow to answer): the
    reader lives on and the watchdog's next wake tries again; nothing lost or repeated."""
    async def main() -> None:
        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            await ensure_shard(js, 0)
            await _publish(js, 1, 3)
            got: list[tuple[int, bytes]] = []

            async def handle(items: list[tuple[int, bytes]]) -> None:
                got.extend(items)

            f = await follow(js, in_stream(0), in_subject(0), 1, handle, silence_s=0.2)
            try:
                for _ in range(100):
                    if len(got) == 3:
                        break
                    await asyncio.sleep(0.02)
                real_subscribe = js.subscribe
                failures = [nats.errors.TimeoutError()]

                async def flaky_subscribe(*args: Any, **kw: Any) -> Any:
                    if failures:
                        raise failures.pop()
                    return await real_subscribe(*args, **kw)

                js.subscribe = flaky_subscribe  # type: ignore[method-assign]
                await js.delete_consumer(in_stream(0), f.sub._consumer)
                await asyncio.sleep(0.1)
                await _publish(js, 4, 3)
                for _ in range(300):
                    if len(got) == 6:
                        break
                    await asyncio.sleep(0.02)
                assert not failures  # it did fail once
                assert f.task is not None and not f.task.done()  # the reader lived on
                assert [seq for seq, _ in got] == [1, 2, 3, 4, 5, 6]
                assert f.resets >= 2
            finally:
                await f.stop()
        finally:
            await nc.close()

    asyncio.run(main())
