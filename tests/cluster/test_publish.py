"""The leader's acknowledged publishes (:class:`~tickline.cluster.publish.AckedPublisher`)
on a real nats-server behave as ``JetStreamContext.publish``: the stream sequence; the
same stored message and headers; the fence (a wrong expected last sequence) raises the
same ``APIError`` with ``err_code`` 10071 and stores nothing; no stream on the subject
raises ``NoStreamResponseError``; many publishes in flight get their own answers."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import APIError, NoStreamResponseError

from tickline.cluster.jetstream import connect, ensure_shard
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.publish import AckedPublisher
from tickline.cluster.shardmap import out_stream, out_subject

_LAST = "Nats-Expected-Last-Sequence"


def test_acked_publish_is_jetstream_publish(nats_server: NatsServer) -> None:
    async def main() -> None:
        nc = await connect(nats_server.url)
        try:
            js = nc.jetstream()
            await ensure_shard(js, 0)
            pub = AckedPublisher(nc)
            await pub.start()
            seq = await pub.publish(out_subject(0), b"one", stream=out_stream(0),
                                    headers={_LAST: "0"}, timeout=2.0)
            ack = await js.publish(out_subject(0), b"two", stream=out_stream(0),
                                   headers={_LAST: "1"}, timeout=2.0)
            assert (seq, ack.seq) == (1, 2)
            mine, theirs = (await js.get_msg(out_stream(0), 1),
                            await js.get_msg(out_stream(0), 2))
            assert mine.data == b"one"
            assert mine.headers is not None and theirs.headers is not None
            assert sorted(mine.headers) == sorted(theirs.headers)
            # the fence: a stale writer's expected last sequence is refused, nothing stored
            with pytest.raises(APIError) as refused:
                await pub.publish(out_subject(0), b"stale", stream=out_stream(0),
                                  headers={_LAST: "1"}, timeout=2.0)
            assert refused.value.err_code == 10071
            assert (await js.stream_info(out_stream(0))).state.last_seq == 2
            with pytest.raises(NoStreamResponseError):
                await pub.publish("tickline.nowhere", b"x", stream=out_stream(0),
                                  headers={}, timeout=2.0)
            # several in flight: each gets its own sequence
            seqs = await asyncio.gather(*(
                pub.publish(out_subject(0), str(i).encode(), stream=out_stream(0),
                            headers={}, timeout=2.0) for i in range(20)))
            assert sorted(seqs) == list(range(3, 23))
            assert not pub._pending
        finally:
            await nc.close()

    asyncio.run(main())
