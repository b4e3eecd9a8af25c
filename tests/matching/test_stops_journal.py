"""Stops and icebergs through the journal (real files): the new command fields are
journaled generically and round-trip; replay, snapshot + tail and recovery give the live
run's events and digest, armed stops, hidden reserves and last prices included; frames and
snapshots written before the fields existed still decode."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tickline.journal import Journal, iter_commands, recover, replay, replay_events
from tickline.matching import (
    BUY,
    SELL,
    Command,
    EngineSnapshot,
    MatchingEngine,
    NewOrder,
    OrderType,
    Replace,
    Triggered,
)

SMALL = 64 << 10


def _write(directory: Path, cmds: list[Command], snapshot_at: int = 0) -> MatchingEngine:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    j = Journal.open(directory, durability="none", segment_bytes=SMALL,
                     instruments=INSTRUMENTS, config=make_config())
    for i, cmd in enumerate(cmds, 1):
        j.append_command(cmd)
        engine.process(cmd)
        if i % 50 == 0 or i == len(cmds):
            j.commit()
        if i == snapshot_at:
            j.commit()
            j.write_snapshot(engine.snapshot())
    j.close()
    return engine


def test_stop_and_iceberg_fields_round_trip_through_the_journal(tmp_path: Path) -> None:
    cmds: list[Command] = [
        NewOrder(seq=1, ts=10, account=1, symbol="AAA", side=SELL, quantity=50, price=101,
                 display_quantity=10),
        NewOrder(seq=2, ts=11, account=2, symbol="AAA", side=BUY, quantity=5,
                 order_type=int(OrderType.STOP), stop_price=102),
        NewOrder(seq=3, ts=12, account=3, symbol="AAA", side=BUY, quantity=10, price=101),
        Replace(seq=4, ts=13, account=2, symbol="AAA", order_id=2, stop_price=101),
    ]
    live = MatchingEngine(INSTRUMENTS, make_config())
    live_events = [live.process(c) for c in cmds]
    _write(tmp_path / "j", cmds)
    assert list(iter_commands(tmp_path / "j")) == cmds  # every field, stop and display too
    replayed = list(replay_events(tmp_path / "j"))
    assert [e for _c, e in replayed] == live_events
    assert any(type(e) is Triggered for e in live_events[3])  # the replace triggered it
    engine, _report = recover(tmp_path / "j")
    assert engine.digest() == live.digest()


def test_random_stream_with_stops_and_icebergs_replays_and_recovers(tmp_path: Path) -> None:
    cmds = random_commands(31, 1500)
    live = _write(tmp_path / "j", cmds, snapshot_at=700)
    full, _ = replay(tmp_path / "j", use_snapshot=False)
    recovered, report = recover(tmp_path / "j")
    assert report.snapshot_seq == 700
    assert full.digest() == recovered.digest() == live.digest()
    recovered.check()
    assert live.stops or any(o.hidden for o in live.orders.values()), "nothing to carry"
    enc = msgspec.msgpack.Encoder()
    fresh = MatchingEngine(INSTRUMENTS, make_config())
    assert [enc.encode(e) for _c, e in replay_events(tmp_path / "j")] == [
        enc.encode(fresh.process(c)) for c in cmds]


def test_old_frames_and_snapshots_still_decode() -> None:
    """A NewOrder/Replace array without the two trailing fields (as journaled before they
    existed) decodes with their defaults; so does a snapshot without stops and last prices."""
    old_new = msgspec.msgpack.encode([1, 5, 6, 7, "AAA", 1, 10, 100, 1, 1, "", 0, False, 0])
    cmd = msgspec.msgpack.decode(old_new, type=Command)
    assert isinstance(cmd, NewOrder) and (cmd.stop_price, cmd.display_quantity) == (0, 0)
    old_replace = msgspec.msgpack.encode([3, 5, 6, 7, "AAA", 4, "", 101, 0, ""])
    rep = msgspec.msgpack.decode(old_replace, type=Command)
    assert isinstance(rep, Replace) and (rep.stop_price, rep.display_quantity) == (0, 0)
    snap = MatchingEngine(INSTRUMENTS, make_config()).snapshot()
    as_dict = msgspec.to_builtins(snap)
    del as_dict["stops"], as_dict["last_prices"]
    old = msgspec.msgpack.decode(msgspec.msgpack.encode(as_dict), type=EngineSnapshot)
    assert old.stops == [] and old.last_prices == {}
