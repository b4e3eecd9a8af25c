"""Replay determinism, snapshot + tail == full replay, snapshot atomicity, comparison."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from tickline.journal import (
    Journal,
    compare_replays,
    list_snapshots,
    read_snapshot,
    recover,
    replay,
    replay_events,
)
from tickline.matching import Replace

from .conftest import SMALL, Mix, write_journal

_enc = msgspec.msgpack.Encoder()


def test_two_replays_give_identical_events_and_digests(
        journal_of: Callable[..., Path], mix: Mix) -> None:
    d = journal_of(segment_bytes=16384)
    first = [(_enc.encode(c), _enc.encode(e)) for c, e in replay_events(d)]
    second = [(_enc.encode(c), _enc.encode(e)) for c, e in replay_events(d)]
    assert len(first) == len(mix.commands)
    assert first == second
    live = mix.engine()  # and identical to the live run that produced the journal
    assert [_enc.encode(live.process(c)) for c in mix.commands] == [e for _c, e in first]
    e1, _ = replay(d, use_snapshot=False)
    e2, _ = replay(d, use_snapshot=False)
    assert e1.digest() == e2.digest() == live.digest()


def test_snapshot_plus_tail_equals_full_replay(journal_of: Callable[..., Path],
                                               mix: Mix) -> None:
    d = journal_of(segment_bytes=16384, snapshot_at=(1500, 4000))
    full, rep_full = replay(d, use_snapshot=False)
    assert rep_full.snapshot_path is None and rep_full.records_replayed == len(mix.commands)
    recovered, rep = recover(d)
    assert rep.snapshot_seq == 4000 and rep.records_replayed == len(mix.commands) - 4000
    assert recovered.digest() == full.digest()
    recovered.check()
    for to in (1, 1499, 1500, 1501, 3999, 4321):  # any point, from the right snapshot
        at, rep_at = replay(d, to_seq=to)
        assert rep_at.snapshot_seq == max((s for s in (1500, 4000) if s <= to), default=0)
        assert at.last_seq == to
        assert at.digest() == mix.digest_after(to)


def test_leftover_snapshot_temp_file_is_ignored(journal_of: Callable[..., Path],
                                                mix: Mix) -> None:
    d = journal_of(snapshot_at=(3000,))
    (_seq, path), = list_snapshots(d)
    # a crash half way through writing a newer snapshot leaves only its temporary file
    tmp = d / ".snapshot-00000000000000006000.tks.tmp"
    tmp.write_bytes(path.read_bytes()[:200])
    engine, rep = recover(d)
    assert rep.snapshot_seq == 3000 and not rep.snapshots_rejected
    assert engine.digest() == mix.digest_after(len(mix.commands))


def test_write_snapshot_is_atomic_and_keeps_the_newest(tmp_path: Path, mix: Mix) -> None:
    engine = mix.engine()
    j = Journal.open(tmp_path, segment_bytes=SMALL, instruments=mix.instruments, keep_snapshots=2)
    for i, cmd in enumerate(mix.commands[:4000], 1):
        j.append_command(cmd)
        engine.process(cmd)
        if i % 1000 == 0:
            j.commit()
            path = j.write_snapshot(engine.snapshot())
            assert read_snapshot(path).last_seq == i
            assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    j.close()
    assert [s for s, _ in list_snapshots(tmp_path)] == [3000, 4000]


def test_snapshot_ahead_of_a_lost_tail_never_reuses_sequence_numbers(
        tmp_path: Path, mix: Mix) -> None:
    write_journal(tmp_path, mix, n=2000, snapshot_at=(2000,))
    (_seq, snap), = list_snapshots(tmp_path)
    for seg in tmp_path.glob("segment-*"):
        seg.unlink()  # the journal is gone, the snapshot survived
    engine, rep = recover(tmp_path)
    assert rep.last_seq == 2000 and engine.digest() == mix.digest_after(2000)
    with Journal.open(tmp_path, segment_bytes=SMALL) as j:
        assert j.last_seq == 2000
        j.append_many(mix.commands[2000:2100])
    engine, rep = recover(tmp_path)
    assert engine.digest() == mix.digest_after(2100)
    del snap


def test_compare_reports_the_first_divergence(tmp_path: Path, mix: Mix) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_journal(a, mix, n=3000)
    write_journal(b, mix, n=3000)
    div, agreed, da, db = compare_replays(a, b)
    assert div is None and agreed == 3000 and da == db

    # b: the same stream, except one move goes to a different price
    c = tmp_path / "c"
    cmds = list(mix.commands[:3000])
    k = next(i for i, cmd in enumerate(cmds) if i > 1500 and type(cmd) is Replace)
    moved = cmds[k]
    assert isinstance(moved, Replace)
    cmds[k] = msgspec.structs.replace(moved, price=moved.price + 1)
    with Journal.open(c, segment_bytes=SMALL, instruments=mix.instruments) as j:
        j.append_many(cmds)
    div, agreed, _, _ = compare_replays(a, c)
    assert div is not None and agreed == k and div.seq == moved.seq
    assert div.reason == "commands differ"

    shorter = tmp_path / "short"
    write_journal(shorter, mix, n=2500)
    div, agreed, _, _ = compare_replays(a, shorter)
    assert div is not None and agreed == 2500
    assert div.reason == "the right journal ends before seq 2501"
