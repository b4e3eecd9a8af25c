"""The exchange loop: sequencing, journal-before-release, recovery, replay, backpressure,
GTD expiry on a timer, draining stop. Real journal files in a temporary directory."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickline.bench.workload import exchange_core_mix
from tickline.exchange import Exchange, ExchangeBusy, ExchangeStopped
from tickline.journal import (
    SnapshotError,
    iter_commands,
    list_snapshots,
    lock_holder,
    replay,
    replay_events,
)
from tickline.journal import snapshot as snapshot_module
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Command,
    Event,
    Expired,
    Instrument,
    NewOrder,
    Rejected,
    RejectReason,
    TimeInForce,
    Trade,
)

ABC = Instrument(symbol="ABC", tick_size=1, lot_size=1)
SEGMENT = 1 << 20  # small segments: every test gets a real journal, none reserves 64 MiB


class FakeClock:
    def __init__(self, start: int = 1_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def test_sequencer_stamps_increasing_seq_and_non_decreasing_ts(tmp_path: Path) -> None:
    clock = FakeClock()
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path, clock=clock)
    seen: list[tuple[int, int]] = []
    for i in range(5):
        clock.now -= 10 * i  # a wall clock stepping backwards must not move engine time back
        ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100 - i, quantity=1),
                  lambda cmd, _events, _r: seen.append((cmd.seq, cmd.ts)))
    ex.pump()
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5]
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(seen))
    ex.close()


def test_every_reply_comes_after_its_command_is_committed(tmp_path: Path) -> None:
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path, durability="batch")
    committed_at_reply: list[tuple[int, int]] = []

    def reply(cmd: Command, _events: list[Event], _reports: object) -> None:
        assert ex.journal is not None
        committed_at_reply.append((cmd.seq, ex.journal.committed_seq))

    for i in range(50):
        ex.submit(NewOrder(account=1 + i % 3, symbol="ABC", side=BUY if i % 2 else SELL,
                           price=100 + (i % 7) - 3, quantity=1 + i % 4), reply)
    ex.pump()
    assert len(committed_at_reply) == 50
    assert all(committed >= seq for seq, committed in committed_at_reply)
    ex.close()


def test_restart_recovers_the_same_engine_and_continues_the_sequence(tmp_path: Path) -> None:
    workload = exchange_core_mix(3_000, seed=3)
    ex = Exchange(workload.instruments, segment_bytes=SEGMENT, journal_dir=tmp_path,
                  snapshot_every=1_000)
    for cmd in workload.prefill + workload.commands:
        ex.submit(msgspec.structs.replace(cmd))
        if ex.processor.queued() >= 512:
            ex.pump()
    ex.pump()
    digest, last_seq = ex.engine.digest(), ex.engine.last_seq
    ex.close()

    again = Exchange(workload.instruments, segment_bytes=SEGMENT, journal_dir=tmp_path)
    assert again.engine.digest() == digest
    assert again.recovery is not None and again.recovery.snapshot_seq > 0
    events = again.process_now(NewOrder(account=9, symbol="XCH", side=BUY, price=1,
                                        quantity=1))
    assert isinstance(events[0], Accepted)
    assert again.engine.last_seq == last_seq + 1
    again.close()
    replayed, _ = replay(tmp_path, use_snapshot=False)
    recovered = Exchange(workload.instruments, segment_bytes=SEGMENT, journal_dir=tmp_path)
    assert replayed.digest() == recovered.engine.digest()
    recovered.close()


def test_replay_reproduces_the_released_events_byte_for_byte(tmp_path: Path) -> None:
    workload = exchange_core_mix(2_000, seed=5)
    ex = Exchange(workload.instruments, segment_bytes=SEGMENT, journal_dir=tmp_path)
    released: list[bytes] = []
    encode = msgspec.msgpack.encode
    for cmd in workload.prefill + workload.commands:
        ex.submit(msgspec.structs.replace(cmd),
                  lambda c, events, _r: released.append(encode([c, events])))
    ex.submit(NewOrder(account=1, symbol="NOPE", side=BUY, price=1, quantity=1),
              lambda c, events, _r: released.append(encode([c, events])))
    ex.pump()
    ex.close()
    replayed = [encode([c, events]) for c, events in replay_events(tmp_path)]
    assert replayed == released
    # rejected commands are journaled too, so the replay has them
    last = list(iter_commands(tmp_path))[-1]
    assert isinstance(last, NewOrder) and last.symbol == "NOPE"


def test_full_inbound_ring_rejects_with_a_typed_error_and_loses_nothing_accepted(
    tmp_path: Path,
) -> None:
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path, capacity=8)
    accepted = 0
    with pytest.raises(ExchangeBusy, match="inbound ring full"):
        for i in range(100):
            ex.submit(NewOrder(account=1, symbol="ABC", side=SELL, price=200 + i, quantity=1))
            accepted += 1
    assert accepted == 8
    assert ex.pump() == 8
    assert len(ex.engine.orders) == 8
    ex.close()
    with pytest.raises(ExchangeStopped):
        ex.submit(NewOrder(account=1, symbol="ABC", side=SELL, price=300, quantity=1))


def test_rejects_flow_back_to_the_submitter(tmp_path: Path) -> None:
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
    events = ex.process_now(NewOrder(account=1, symbol="ABC", side=BUY, price=0, quantity=1))
    assert len(events) == 1 and isinstance(events[0], Rejected)
    assert events[0].reason == RejectReason.NON_POSITIVE_PRICE
    ex.close()


def test_gtd_orders_expire_on_the_timer_without_other_traffic(tmp_path: Path) -> None:
    async def scenario() -> list[Event]:
        ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
        runner = asyncio.create_task(ex.run())
        now = ex._clock()
        ex.submit(NewOrder(account=7, symbol="ABC", side=BUY, price=100, quantity=5,
                           tif=TimeInForce.GTD, expire_time=now + 50_000_000))
        got: list[Event] = []
        async with asyncio.timeout(5):
            while not any(isinstance(e, Expired) for e in got):
                await asyncio.sleep(0.01)
                got = _events_of(ex)
        await ex.stop()
        await runner
        return got

    events = asyncio.run(scenario())
    assert any(isinstance(e, Expired) for e in events)


def _events_of(ex: Exchange) -> list[Event]:
    """Every event the engine has produced so far, replayed from the journal."""
    assert ex.journal is not None
    ex.journal.sync()
    return [e for _c, evs in replay_events(ex.journal.directory) for e in evs]


def test_stop_drains_everything_accepted(tmp_path: Path) -> None:
    async def scenario() -> int:
        ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
        runner = asyncio.create_task(ex.run())
        replies = 0

        def reply(_c: Command, _e: list[Event], _r: object) -> None:
            nonlocal replies
            replies += 1

        for i in range(300):
            ex.submit(NewOrder(account=1 + i % 2, symbol="ABC", side=BUY if i % 2 else SELL,
                               price=100, quantity=1), reply)
        await ex.stop()
        await runner
        return replies

    assert asyncio.run(scenario()) == 300
    trades = sum(isinstance(e, Trade) for _c, evs in replay_events(tmp_path) for e in evs)
    assert trades == 150


def test_a_journal_failure_stops_the_exchange_and_acknowledges_nothing(tmp_path: Path) -> None:
    """Regression: a journal error killed the run task but the exchange still accepted
    commands (they waited in the ring forever, unanswered), and close() re-drained them into
    the broken journal and raised instead of closing."""
    async def scenario() -> None:
        ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
        runner = asyncio.create_task(ex.run())
        replied: list[int] = []

        def order(price: int) -> NewOrder:
            return NewOrder(account=1, symbol="ABC", side=BUY, price=price, quantity=1)

        ex.submit(order(100), lambda cmd, _ev, _r: replied.append(cmd.seq))
        await asyncio.sleep(0.05)
        assert replied == [1]
        journal = ex.journal
        assert journal is not None

        def broken_commit() -> None:
            raise OSError(5, "Input/output error")

        journal.commit = broken_commit  # type: ignore[method-assign]
        ex.submit(order(101), lambda cmd, _ev, _r: replied.append(cmd.seq))
        with pytest.raises(OSError):
            await asyncio.wait_for(runner, 5)
        assert replied == [1]  # the unjournaled command was never acknowledged
        assert isinstance(ex.failure, OSError)
        with pytest.raises(ExchangeStopped):
            ex.submit(order(102), lambda cmd, _ev, _r: replied.append(cmd.seq))
        await ex.stop()  # closes without raising
        assert replied == [1]

    asyncio.run(scenario())


class _FullDisk:
    """Stands in for the ``os`` module of :mod:`tickline.journal.snapshot`: ``write`` puts
    ``room`` bytes on disk, then fails with ENOSPC, as a filling disk does; everything else
    is the real ``os``. ``full = False`` frees the disk."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.full = True

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if not self.full:
            return os.write(fd, data)
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[:self.room]))
        self.room -= n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def _rest(ex: Exchange, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        ex.submit(NewOrder(account=1 + i % 2, symbol="ABC", side=BUY if i % 2 else SELL,
                           price=90 - i % 7 if i % 2 else 110 + i % 7, quantity=1 + i % 3))
    ex.pump()


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_failed_snapshot_is_logged_counted_cleaned_up_and_never_breaks_close(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 14, item 2): on a nearly full disk a failed periodic snapshot was
    counted as written, logged nothing, left its partial temporary file (which filled the
    disk), and the next shutdown raised it, skipping the journal close."""
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path, snapshot_every=50)
    disk = _FullDisk(room=100)
    monkeypatch.setattr(snapshot_module, "os", disk)
    _rest(ex, 60)  # the periodic snapshot starts after the batch, on its thread
    _wait_for(lambda: ex.snapshots_failed == 1, "the failed snapshot")
    assert ex.snapshots == 0  # "written": none was
    assert ex.snapshot_error is not None and "No space left on device" in ex.snapshot_error
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert not list_snapshots(tmp_path)
    assert any(r.levelname == "ERROR" and "snapshot failed" in r.getMessage()
               for r in caplog.records)
    assert ex.statistics()["snapshots"] == {"written": 0, "failed": 1, "skipped": 0,
                                            "last_error": ex.snapshot_error}
    assert "tickline_exchange_snapshots_failed_total 1" in ex.prometheus()
    # an explicit, waited snapshot gets the typed error (and is counted too)
    with pytest.raises(SnapshotError, match="No space left on device") as info:
        ex.snapshot(wait=True)
    assert isinstance(info.value.cause, OSError) and info.value.cause.errno == errno.ENOSPC
    assert ex.snapshots_failed == 2
    # the exchange kept going all along, and a later snapshot clears the degraded state
    disk.full = False
    _rest(ex, 60, start=60)
    _wait_for(lambda: ex.snapshots == 1, "the successful snapshot")
    assert ex.snapshot_error is None and len(list_snapshots(tmp_path)) == 1
    # fail again, then close: no exception, the journal is closed and unlocked
    disk.full = True
    disk.room = 10
    _rest(ex, 60, start=120)
    ex.close()
    assert ex.snapshots_failed == 3 and ex.journal is None
    assert lock_holder(tmp_path) is None
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # the journal is the source of truth: recovery from it is the state that was served
    monkeypatch.undo()
    engine, _report = replay(tmp_path, use_snapshot=False)
    assert engine.digest() == ex.engine.digest() and engine.last_seq == 180
