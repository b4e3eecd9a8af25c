"""The leader's output and its lease, without a server (fakes for the KV bucket and
JetStream): a leader whose lease is valid publishes without waiting for a renewal (the lease
loop renews it); only a renewal late enough to threaten the lease's validity is done in the
publish path, before publishing; a leader whose last renewal is older than the lease steps
down and publishes nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tickline.cluster.node import EngineNode
from tickline.cluster.wire import Logged
from tickline.matching import BUY, Instrument, NewOrder

LEASE = 1.0


class FakeKV:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.updates = 0

    async def update(self, key: str, value: bytes, last: int) -> int:
        self.updates += 1
        await asyncio.sleep(self.delay)
        return last + 1


class FakeJS:
    """The leader's output publisher (:class:`~tickline.cluster.publish.AckedPublisher`)."""

    def __init__(self) -> None:
        self.published: list[tuple[float, dict[str, str]]] = []

    async def publish(self, subject: str, payload: bytes, **kw: Any) -> int:
        self.published.append((time.monotonic(), kw["headers"]))
        return len(self.published)


def leader(renewed_ago: float, kv_delay: float) -> tuple[EngineNode, FakeKV, FakeJS]:
    node = EngineNode("nats://unused", [Instrument(symbol="ABC")], lease_s=LEASE)
    kv, js = FakeKV(kv_delay), FakeJS()
    node.kv, node._output = kv, js  # type: ignore[assignment]
    node.leader = True
    node._revision = 7
    node._renewed = time.monotonic() - renewed_ago
    done = node.replica.apply(1, Logged("gw", 1, time.time_ns(), [
        NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=1)]))
    node._unpublished.extend(done)
    return node, kv, js


def test_a_valid_lease_publishes_without_waiting_for_a_renewal() -> None:
    async def main() -> None:
        # past lease/4 (the lease loop's renewal is due or in flight) but well inside lease/2
        node, kv, js = leader(renewed_ago=0.3 * LEASE, kv_delay=10.0)
        await asyncio.wait_for(node._publish(), 1.0)
        assert len(js.published) == 1 and kv.updates == 0
        assert js.published[0][1] == {"Nats-Expected-Last-Sequence": "0"}
        assert node.out_seq == 1 and node.published_seq == 1 and not node._unpublished

    asyncio.run(main())


def test_a_late_lease_is_renewed_before_publishing() -> None:
    async def main() -> None:
        node, kv, js = leader(renewed_ago=0.4 * LEASE, kv_delay=0.05)
        started = time.monotonic()
        await asyncio.wait_for(node._publish(), 1.0)
        assert kv.updates == 1 and node._revision == 8
        assert len(js.published) == 1 and js.published[0][0] - started >= 0.05
        assert node.lease_valid()

    asyncio.run(main())


def test_a_lease_older_than_the_lease_steps_down_and_publishes_nothing() -> None:
    async def main() -> None:
        # frozen for longer than the lease: the key may be someone else's by now
        node, kv, js = leader(renewed_ago=1.1 * LEASE, kv_delay=0.0)
        await asyncio.wait_for(node._publish(), 1.0)
        assert not js.published and not node.leader and len(node._unpublished) == 1
        assert kv.updates == 0  # refused by time, before asking the server

    asyncio.run(main())
