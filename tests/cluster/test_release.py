"""The cluster gateway's per-command release (:mod:`tickline.cluster.release`, compiled in
the compiled build) without a server: the output rows are the same message as the
``Output`` structs; the gateway answers its submissions in submission order with the
reports the engine's own builder numbered, only routes other gateways' commands, counts
each command off its batch, and drops what a takeover re-published; the publisher holds a
shard's new commands while a batch of it is in flight (they travel as one message when it
comes back, or after the bound)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.bench.workload import exchange_core_mix
from tickline.cluster.gateway import _HOLD_S, ClusterExchange
from tickline.cluster.release import Batch, Wait, publish_items, release, ticket, unseen
from tickline.cluster.replica import Replica
from tickline.cluster.wire import (
    Done,
    Logged,
    Output,
    decode_logged,
    decode_output_rows,
    encode,
)
from tickline.matching import BUY, NewOrder
from tickline.stream.history import ReportHistory
from tickline.stream.reports import ReportBuilder
from tickline.stream.routing import ReportRouter

WORK = exchange_core_mix(600, seed=3)


def _gateway() -> ClusterExchange:
    ex = ClusterExchange("nats://unused", WORK.instruments)
    ex.nc = SimpleNamespace(is_connected=True, max_payload=1 << 20)  # type: ignore[assignment]
    ex._leader_seen = [float("inf")]
    return ex


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 500), st.integers(1, 60))
def test_rows_are_the_output_message(start: int, size: int) -> None:
    replica = Replica(WORK.instruments)
    cmds = WORK.prefill + WORK.commands
    payload = encode(Logged("gw", 1, 1_000, cmds[:start + size]))
    done = replica.apply(1, decode_logged(payload))[start:]
    data = encode(Output(5, 0, done))
    epoch, shard, rows = decode_output_rows(data)
    assert (epoch, shard) == (5, 0)
    assert rows == [(d.gateway, d.ticket, d.cmd, d.events) for d in done]
    assert encode(Output(epoch, shard, [Done(*r) for r in rows])) == data


def test_replies_in_submission_order_with_the_engines_reports() -> None:
    ex = _gateway()
    replica = Replica(WORK.instruments)
    got: list[tuple[int, list[Any]]] = []
    cmds = WORK.prefill + WORK.commands
    expected = []
    for i in range(0, len(cmds), 37):
        part = cmds[i:i + 37]
        ex.submit_many(part, lambda cmd, _ev, reports: got.append((cmd.seq, reports)))
        waits, ex._to_publish = ex._to_publish, []
        for b in ex._make_batches(waits):
            done = replica.apply(replica.in_seq + 1, decode_logged(b.payload))
            expected.extend(d.cmd.seq for d in done)
            ex._on_output(0, encode(Output(1, 0, done)))
    assert [seq for seq, _ in got] == list(range(1, len(cmds) + 1))
    assert [seq for seq, _ in got] == expected
    assert not ex._order and not ex._mine and not ex._batches
    assert ex.released == len(cmds)
    # the gateway's mirror numbered every account's reports as the engine's builder did
    assert ex.reports.state() == replica.reports.state()


def _rows(gateway: str, first_ticket: int, first_seq: int, n: int) -> list[Any]:
    rows = []
    for i in range(n):
        cmd = NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=1,
                       seq=first_seq + i, ts=10 + i)
        rows.append((gateway, first_ticket + i, cmd, []))
    return rows


def _parts() -> tuple[ReportBuilder, ReportHistory, ReportRouter]:
    return ReportBuilder(), ReportHistory(64), ReportRouter()


def test_release_answers_the_head_and_keeps_the_rest_in_order() -> None:
    answered: list[int] = []
    order: deque[Wait] = deque()
    mine: dict[int, Wait] = {}
    waits = [Wait(0, None, lambda cmd, _e, _r: answered.append(cmd.seq), None)
             for _ in range(3)]
    order.extend(waits)
    b = Batch(1, 3, 0, b"", "gw:1")
    batches = {1: b}
    ticket(waits, 1, b, mine)
    assert [w.ticket for w in waits] == [1, 2, 3] and set(mine) == {1, 2, 3}
    # ticket 2 comes back first (another shard's output would do this): kept, not answered
    rows = _rows("gw", 2, 5, 1)
    top, n = release(rows, "gw", mine, order, batches, *_parts(), 0)
    assert (top, n, answered) == (2, 0, [])
    assert waits[1].done and waits[1].cmd.seq == 5 and b.left == 2
    # tickets 1 and 3: 1 is the head (answered now), 3 is kept behind the done 2
    rows = _rows("gw", 1, 6, 1) + _rows("gw", 3, 7, 1)
    top, n = release(rows, "gw", mine, order, batches, *_parts(), top)
    assert (top, n, answered) == (3, 1, [6])
    assert list(order) == waits[1:] and waits[2].done
    assert not batches and not mine  # every command of the batch released


def test_release_only_routes_another_gateways_commands() -> None:
    order: deque[Wait] = deque()
    w = Wait(0, None, lambda *_: None, None)
    order.append(w)
    mine = {1: w}
    top, n = release(_rows("other", 1, 1, 2), "gw", mine, order, {}, *_parts(), 0)
    assert (top, n) == (0, 0) and mine == {1: w} and not w.done


def test_unseen_drops_what_was_applied() -> None:
    rows = _rows("gw", 1, 5, 4)
    assert unseen(rows, 4) is rows
    assert [r[2].seq for r in unseen(rows, 6)] == [7, 8]
    assert unseen(rows, 8) == []
    assert publish_items(rows[:1]) == [(5, 10, [])]


def test_a_republished_output_is_released_once() -> None:
    ex = _gateway()
    replica = Replica(WORK.instruments)
    got: list[int] = []
    ex.submit_many(WORK.prefill[:20], lambda cmd, _e, _r: got.append(cmd.seq))
    waits, ex._to_publish = ex._to_publish, []
    (b,) = ex._make_batches(waits)
    done = replica.apply(1, decode_logged(b.payload))
    ex._on_output(0, encode(Output(1, 0, done[:12])))
    ex._on_output(0, encode(Output(2, 0, done)))  # a new leader re-publishes from 1
    assert got == list(range(1, 21))
    assert ex.reports.state() == replica.reports.state()
    assert ex.statistics()["epochs"] == [2]


class _FakeNC:
    """What the publisher uses of a NATS connection: ``publish`` (recorded)."""

    is_connected = True
    max_payload = 1 << 20

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def publish(self, subject: str, payload: bytes, **kw: Any) -> None:
        self.sent.append(payload)


def _order(i: int) -> NewOrder:
    return NewOrder(account=1, symbol=WORK.instruments[0].symbol, side=BUY,
                    price=WORK.prefill[0].price, quantity=1, client_order_id=f"w{i}")


def test_commands_wait_for_a_batch_in_flight_and_travel_together() -> None:
    async def main() -> None:
        ex = ClusterExchange("nats://unused", WORK.instruments, batches_in_flight=1)
        nc = _FakeNC()
        ex.nc = nc  # type: ignore[assignment]
        ex._leader_seen = [float("inf")]
        task = asyncio.get_running_loop().create_task(ex._publisher())
        replica = Replica(WORK.instruments)
        got: list[str] = []
        try:
            for i in range(4):  # four loop turns
                ex.submit(_order(i), lambda cmd, _e, _r: got.append(cmd.client_order_id))
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            assert len(nc.sent) == 1 and ex.held_back >= 1  # the rest waits for it
            done = replica.apply(1, decode_logged(nc.sent[0]))
            ex._on_output(0, encode(Output(1, 0, done)))  # it came back: the rest goes
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert len(nc.sent) == 2
            assert [c.client_order_id for c in decode_logged(nc.sent[1]).cmds] == [
                "w1", "w2", "w3"]  # one message
            ex._on_output(0, encode(Output(1, 0, replica.apply(2, decode_logged(
                nc.sent[1])))))
            assert got == ["w0", "w1", "w2", "w3"]
            # nothing comes back (a lost batch, a failover): held at most _HOLD_S
            ex.submit(_order(4), lambda *_: None)
            await asyncio.sleep(0)
            ex.submit(_order(5), lambda *_: None)
            await asyncio.sleep(0)
            assert len(nc.sent) == 3
            await asyncio.sleep(_HOLD_S * 2)
            assert len(nc.sent) == 4
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())


def test_no_window_publishes_every_turn() -> None:
    async def main() -> None:
        ex = ClusterExchange("nats://unused", WORK.instruments, batches_in_flight=0)
        nc = _FakeNC()
        ex.nc = nc  # type: ignore[assignment]
        ex._leader_seen = [float("inf")]
        task = asyncio.get_running_loop().create_task(ex._publisher())
        try:
            for i in range(3):
                ex.submit(_order(i), lambda *_: None)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            assert len(nc.sent) == 3 and ex.held_back == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(main())
