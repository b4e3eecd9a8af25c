"""Standby and failover against a real nats-server with real engine processes.

* leader SIGKILL → the standby takes over within a bounded time, under continuous load, and
  every acknowledged order is present exactly once — 20 times in a row (each round kills the
  current leader; a fresh standby joins for the next round);
* a stale leader (SIGSTOP, a takeover, then SIGCONT) cannot publish: every output message
  after the takeover carries the new epoch, and no command's result is published twice.
"""

from __future__ import annotations

import asyncio
import io
import signal
import statistics
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.cluster.procs import EngineProc
from tickline.client import Client
from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.jetstream import connect
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.node import leader_key
from tickline.cluster.wire import decode_output
from tickline.config import default_config
from tickline.gateway.binary import BinaryGateway

T = TypeVar("T")

LEASE = 0.6
ROUNDS = 20
TAKEOVER_BOUND_S = 2.0


class Load:
    """Resting buy orders (never trade, so each stays live), one every ``gap`` seconds,
    many in flight; records every acknowledgement."""

    def __init__(self, client: Client, gap: float = 0.004) -> None:
        self.client = client
        self.gap = gap
        self.sent = 0
        self.acked: dict[str, int] = {}  # client order id -> order id
        self.ack_times: list[tuple[float, float]] = []  # (sent at, acked at)
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = False

    async def _one(self, clid: str) -> None:
        sent = time.monotonic()
        try:
            ack = await self.client.new_order("AAPL", "buy", 1, "0.50", client_order_id=clid)
        except BaseException as e:  # recorded; the test asserts there are none
            self.errors.append(e)
            return
        self.acked[clid] = ack.order_id
        self.ack_times.append((sent, time.monotonic()))

    async def run(self) -> None:
        while not self._stop:
            self.sent += 1
            t = asyncio.ensure_future(self._one(f"o{self.sent}"))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
            await asyncio.sleep(self.gap)

    async def finish(self) -> None:
        self._stop = True
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*self._tasks), 30)

    def first_ack_sent_after(self, t: float) -> float | None:
        later = [acked for sent, acked in self.ack_times if sent >= t]
        return min(later) if later else None


async def start_gateway(url: str) -> tuple[ClusterExchange, BinaryGateway, int]:
    cfg = default_config()
    ex = ClusterExchange(url, cfg.instruments, lease_s=LEASE, unavailable_after_s=30)
    await ex.start()
    gw = BinaryGateway(ex, cfg)
    return ex, gw, await gw.start()


async def leader_of(url: str) -> str:
    nc = await connect(url)
    try:
        kv = await nc.jetstream().key_value("TL_LEADER")
        return (await kv.get(leader_key(0))).value.decode()  # type: ignore[union-attr]
    finally:
        await nc.close()


async def outputs(url: str) -> list[tuple[int, list[int]]]:
    """Every output message of shard 0: (epoch, input sequences it carries)."""
    nc = await connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("TL_OUT_0")
        got = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            out = decode_output((await js.get_msg("TL_OUT_0", seq)).data or b"")
            got.append((out.epoch, [d.cmd.seq for d in out.done]))
        return got
    finally:
        await nc.close()


async def bounded(step: str, awaitable: Awaitable[T], seconds: float = 30) -> T:
    """``awaitable``'s result, or a failure that names the step that did not finish (this
    test once hung after its 20 rounds, until the per-test timeout, without saying where)."""
    task = asyncio.ensure_future(awaitable)
    # asyncio.wait, not wait_for: on 3.11 wait_for waits for the cancelled step to finish,
    # so it bounds nothing when the step itself hangs
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        stacks = _task_stacks()
        task.cancel()
        raise AssertionError(f"{step} did not finish within {seconds} s; pending tasks:\n"
                             f"{stacks}")
    return task.result()


def _task_stacks() -> str:
    """Every pending task of the running loop with where it waits (what the gdb dump of
    the hang had to find by hand)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r} cancelling={task.cancelling()}", file=out)
        task.print_stack(file=out)
    return out.getvalue()


def check_outputs_fenced(outs: list[tuple[int, list[int]]]) -> None:
    """Epochs never go back, and each input sequence is published once, in order."""
    epochs = [e for e, _ in outs]
    assert epochs == sorted(epochs), epochs
    seqs = [s for _, ss in outs for s in ss]
    assert seqs == list(range(1, len(seqs) + 1)), "a result was published twice or skipped"


@pytest.mark.slow
def test_leader_sigkill_standby_takes_over_20_times(nats_server: NatsServer,
                                                    tmp_path: Path) -> None:
    url = nats_server.url
    procs: dict[str, EngineProc] = {}

    def engine(name: str) -> EngineProc:
        procs[name] = EngineProc(url, tmp_path / f"{name}.log", node_id=name, lease=LEASE)
        return procs[name]

    takeovers: list[float] = []

    async def main() -> None:
        await asyncio.to_thread(engine, "n0")
        await asyncio.to_thread(engine, "n1")
        ex, gw, port = await start_gateway(url)
        client = await Client.connect("127.0.0.1", port, "alice-key")
        load = Load(client)
        runner = asyncio.ensure_future(load.run())
        try:
            for r in range(ROUNDS):
                await asyncio.sleep(0.3)  # load on the current leader
                leader = await leader_of(url)
                standbys = {n for n, p in procs.items() if n != leader and p.proc.poll() is None}
                killed_at = time.monotonic()
                procs[leader].kill()
                # the next round's standby starts while this takeover happens
                nxt = asyncio.ensure_future(asyncio.to_thread(engine, f"n{r + 2}"))
                deadline = killed_at + 10
                while load.first_ack_sent_after(killed_at) is None:
                    assert time.monotonic() < deadline, f"round {r}: no takeover"
                    await asyncio.sleep(0.005)
                first = load.first_ack_sent_after(killed_at)
                assert first is not None
                takeovers.append(first - killed_at)
                assert await leader_of(url) in standbys | {f"n{r + 2}"}
                await nxt
        finally:
            await load.finish()
            runner.cancel()
        assert not load.errors, load.errors[:3]
        assert len(load.acked) == load.sent
        # every acknowledged order is live exactly once in the engine the gateway mirrors
        opened = await bounded("open_orders", client.open_orders("AAPL"))
        clids = [o.client_order_id for o in opened]
        assert len(clids) == len(set(clids))
        assert set(clids) == set(load.acked)
        assert {o.order_id for o in opened} == set(load.acked.values())
        client.close()
        await bounded("gateway close", gw.close())
        await bounded("exchange stop", ex.stop())
        check_outputs_fenced(await bounded("reading the outputs", outputs(url), 60))

    try:
        asyncio.run(main())
    finally:
        for p in procs.values():
            p.close()
    median = statistics.median(takeovers)
    print(f"takeover (SIGKILL -> first ack of an order sent after it): median "
          f"{median:.3f}s max {max(takeovers):.3f}s over {len(takeovers)} rounds")
    assert max(takeovers) < TAKEOVER_BOUND_S, takeovers


@pytest.mark.slow
def test_stale_leader_cannot_publish_after_takeover(nats_server: NatsServer,
                                                    tmp_path: Path) -> None:
    url = nats_server.url
    a = EngineProc(url, tmp_path / "a.log", node_id="a", lease=LEASE)
    b = EngineProc(url, tmp_path / "b.log", node_id="b", lease=LEASE)

    async def main() -> None:
        ex, gw, port = await start_gateway(url)
        client = await Client.connect("127.0.0.1", port, "alice-key")
        load = Load(client)
        runner = asyncio.ensure_future(load.run())
        try:
            await asyncio.sleep(0.3)
            assert await leader_of(url) == "a"
            a.signal(signal.SIGSTOP)  # frozen: cannot renew, does not know
            stopped_at = time.monotonic()
            while await leader_of_or_none(url) != "b":
                assert time.monotonic() < stopped_at + 10, "b never took over"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # b leads under load
            a.signal(signal.SIGCONT)  # a wakes up with input it has not published
            await asyncio.to_thread(a.wait_for, "steps down")
            await asyncio.sleep(0.3)
        finally:
            await load.finish()
            runner.cancel()
        assert not load.errors
        assert len(load.acked) == load.sent
        opened = await client.open_orders("AAPL")
        assert sorted(o.client_order_id for o in opened) == sorted(load.acked)
        client.close()
        await gw.close()
        await ex.stop()
        outs = await outputs(url)
        check_outputs_fenced(outs)
        epochs = sorted({e for e, _ in outs})
        assert len(epochs) == 2  # a's, then b's: nothing from a after b's first message
        assert await leader_of(url) == "b"

    async def leader_of_or_none(url: str) -> str | None:
        try:
            return await leader_of(url)
        except Exception:
            return None

    try:
        asyncio.run(main())
        text = a.text()
        assert "not publishing" in text or "fenced" in text or "steps down" in text
    finally:
        a.close()
        b.close()
