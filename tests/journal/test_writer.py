"""The writer: framing, commit, reopen, segment rollover, durability policies, arguments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tickline.journal import (
    RECORD_COMMAND,
    Journal,
    JournalError,
    iter_commands,
    iter_records,
    verify,
)
from tickline.journal.format import (
    RECORD_HEADER,
    RECORD_SEAL,
    SEGMENT_HEADER_SIZE,
    crc32c,
    list_segments,
)
from tickline.matching import NewOrder, TimeTick

from .conftest import SMALL, Mix, write_journal


def _order(seq: int) -> NewOrder:
    return NewOrder(seq=seq, ts=seq * 1000, account=1 + seq % 7, symbol="XCH", side=1 + seq % 2,
                    price=1000 + seq % 50, quantity=1 + seq % 9)


def test_records_round_trip_with_their_frame(tmp_path: Path) -> None:
    cmds = [_order(s) for s in range(1, 51)]
    with Journal.open(tmp_path, segment_bytes=SMALL, durability="batch") as j:
        j.append_many(cmds[:20])
        for cmd in cmds[20:]:
            j.append_command(cmd)
        j.commit()
        assert j.last_seq == j.committed_seq == 50
    assert list(iter_commands(tmp_path)) == cmds
    (index, path), = list_segments(tmp_path)
    assert index == 1
    data = path.read_bytes()
    length, check, seq, rtype, flags, reserved = RECORD_HEADER.unpack_from(data,
                                                                          SEGMENT_HEADER_SIZE)
    payload = data[SEGMENT_HEADER_SIZE + 24:SEGMENT_HEADER_SIZE + length]
    assert (seq, rtype, flags, reserved) == (1, RECORD_COMMAND, 0, 0)
    assert check == crc32c(data[SEGMENT_HEADER_SIZE + 8:SEGMENT_HEADER_SIZE + length])
    assert msgspec.msgpack.decode(payload) == msgspec.msgpack.decode(
        msgspec.msgpack.encode(cmds[0]))


def test_uncommitted_records_are_not_in_the_segment(tmp_path: Path) -> None:
    j = Journal.open(tmp_path, segment_bytes=SMALL, durability="none")
    j.append_command(_order(1))
    j.commit()
    j.append_command(_order(2))
    assert j.last_seq == 2 and j.committed_seq == 1
    assert [c.seq for c in iter_commands(tmp_path)] == [1]
    j.close()  # close commits
    assert [c.seq for c in iter_commands(tmp_path)] == [1, 2]


def test_reopen_positions_after_the_last_record(tmp_path: Path) -> None:
    with Journal.open(tmp_path, segment_bytes=SMALL) as j:
        j.append_many([_order(s) for s in range(1, 11)])
    j = Journal.open(tmp_path, segment_bytes=SMALL)
    assert j.last_seq == 10
    with pytest.raises(JournalError, match="sequence numbers must increase: got 10 after 10"):
        j.append_command(_order(10))
    j.append_many([_order(s) for s in range(15, 20)])  # gaps are allowed
    j.close()
    assert [c.seq for c in iter_commands(tmp_path)] == [*range(1, 11), *range(15, 20)]
    assert verify(tmp_path).ok


def test_decreasing_seq_in_append_many_keeps_the_valid_prefix(tmp_path: Path) -> None:
    with Journal.open(tmp_path, segment_bytes=SMALL) as j:
        with pytest.raises(JournalError, match="got 3 after 4"):
            j.append_many([_order(1), _order(2), _order(4), _order(3)])
        assert j.last_seq == 4
    assert [c.seq for c in iter_commands(tmp_path)] == [1, 2, 4]


def test_segment_rollover_seals_and_continues(tmp_path: Path, mix: Mix) -> None:
    write_journal(tmp_path, mix, segment_bytes=8192, batch=37)
    segments = list_segments(tmp_path)
    assert len(segments) > 20
    assert [i for i, _ in segments] == list(range(1, len(segments) + 1))
    for _index, path in segments[:-1]:  # every full segment ends with a seal record
        data = path.read_bytes()
        assert len(data) == 8192
        off = SEGMENT_HEADER_SIZE
        last_type = 0
        while off + 24 <= len(data) and last_type != RECORD_SEAL:
            length, _c, _s, last_type, _f, _r = RECORD_HEADER.unpack_from(data, off)
            assert length > 0, "a full segment must end with a seal"
            off += length
        assert last_type == RECORD_SEAL
        assert data[off:] == bytes(len(data) - off)
    assert list(iter_commands(tmp_path)) == mix.commands
    report = verify(tmp_path)
    assert report.ok, report.problems
    assert report.records == len(mix.commands) and report.segments == len(segments)


def test_iter_from_seq_starts_in_the_right_segment(tmp_path: Path, mix: Mix) -> None:
    write_journal(tmp_path, mix, segment_bytes=8192)
    for start in (1, 2, 777, 3001, len(mix.commands)):
        got = [c.seq for c in iter_commands(tmp_path, from_seq=start)]
        assert got == [c.seq for c in mix.commands if c.seq >= start]
    assert [c.seq for c in iter_commands(tmp_path, from_seq=10, to_seq=20)] == list(
        range(10, 21))


def test_raw_records_and_types(tmp_path: Path) -> None:
    with Journal.open(tmp_path, segment_bytes=SMALL) as j:
        j.append(1, 7, b"hello")
        j.append(2, RECORD_COMMAND, msgspec.msgpack.encode(TimeTick(seq=2, ts=5)))
        with pytest.raises(JournalError, match=r"record_type must be in 1\.\.65534, got 65535"):
            j.append(3, 0xFFFF, b"")
        with pytest.raises(JournalError, match=r"record_type must be in 1\.\.65534, got 0"):
            j.append(3, 0, b"")
    records = list(iter_records(tmp_path))
    assert (records[0].seq, records[0].type, records[0].payload) == (1, 7, b"hello")
    assert list(iter_commands(tmp_path)) == [TimeTick(seq=2, ts=5)]  # other types skipped


def test_record_too_large_for_a_segment(tmp_path: Path) -> None:
    with Journal.open(tmp_path, segment_bytes=4096) as j, pytest.raises(
            JournalError, match="record of 5024 bytes does not fit in a segment of 4096 bytes"):
        j.append(1, 9, bytes(5000))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"durability": "sometimes"},
     "durability must be one of none, batch, interval; got 'sometimes'"),
    ({"segment_bytes": 100}, "segment_bytes must be >= 4096, got 100"),
    ({"interval_ms": -1}, "interval_ms must be >= 0, got -1"),
])
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, object],
                                 message: str) -> None:
    with pytest.raises(JournalError, match=message):
        Journal.open(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_durability_policies_sync_as_stated(tmp_path: Path) -> None:
    def syncs(durability: str, interval_ms: int = 5) -> int:
        d = tmp_path / f"{durability}-{interval_ms}"
        j = Journal.open(d, segment_bytes=SMALL, durability=durability, interval_ms=interval_ms)
        for s in range(1, 21):
            j.append_command(_order(s))
            j.commit()
        n = j.syncs
        j.close()
        return n

    assert syncs("batch") == 20  # every commit
    assert syncs("none") == 0  # never
    assert syncs("interval", interval_ms=0) == 20  # the window has always passed
    assert syncs("interval", interval_ms=60_000) == 0  # not yet


def test_metadata_is_recorded_and_checked(tmp_path: Path, mix: Mix) -> None:
    Journal.open(tmp_path, segment_bytes=SMALL, instruments=mix.instruments).close()
    inst = mix.instruments[0]
    changed = msgspec.structs.replace(inst, tick_size=5)
    with pytest.raises(JournalError, match="instrument 'XCH' differs from the one recorded"):
        Journal.open(tmp_path, segment_bytes=SMALL, instruments=[changed])
    extra = msgspec.structs.replace(inst, symbol="NEW")
    Journal.open(tmp_path, segment_bytes=SMALL, instruments=[inst, extra]).close()
    from tickline.journal import read_meta
    meta = read_meta(tmp_path)
    assert meta is not None and [i.symbol for i in meta.instruments] == ["XCH", "NEW"]


def test_leftover_segment_temp_file_is_removed(tmp_path: Path) -> None:
    Journal.open(tmp_path, segment_bytes=SMALL).close()
    tmp = tmp_path / ".segment-0000000001.tkj.tmp"
    tmp.write_bytes(b"half a segment")
    with Journal.open(tmp_path, segment_bytes=SMALL) as j:
        j.append_command(_order(1))
    assert not tmp.exists()
    assert sorted(os.listdir(tmp_path)) == ["journal.lock", "segment-0000000001.tkj"]


def test_leftover_snapshot_temp_file_is_removed_by_the_next_writer(tmp_path: Path) -> None:
    """A snapshot write killed half-way leaves its temporary file; the next writer (the
    only one: it holds the lock) removes it, and verify no longer warns about it."""
    Journal.open(tmp_path, segment_bytes=SMALL).close()
    tmp = tmp_path / ".snapshot-00000000000000000007.tks.tmp"
    tmp.write_bytes(b"half a snapshot")
    from tickline.journal import verify
    assert any("leftover temporary file" in w for w in verify(tmp_path).warnings)
    Journal.open(tmp_path, segment_bytes=SMALL).close()
    assert not tmp.exists()
    assert not [w for w in verify(tmp_path).warnings if "temporary" in w]


def test_a_full_disk_fails_segment_creation_instead_of_a_sparse_segment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: any posix_fallocate error, ENOSPC included, fell back to a sparse file,
    so on a full disk the journal went on writing into a mapping without blocks behind it
    (SIGBUS at the first page the filesystem cannot back). Only "cannot preallocate here"
    errors may fall back."""
    import errno

    def fallocate(err: int) -> Any:
        def fail(_fd: int, _offset: int, _size: int) -> None:
            raise OSError(err, os.strerror(err))
        return fail

    monkeypatch.setattr(os, "posix_fallocate", fallocate(errno.ENOSPC))
    j = Journal.open(tmp_path / "full", segment_bytes=SMALL, durability="batch")
    with pytest.raises(JournalError, match="No space left"):
        j.append_command(_order(1))
    assert list_segments(tmp_path / "full") == []
    assert not [n for n in os.listdir(tmp_path / "full") if n.endswith(".tmp")]

    monkeypatch.setattr(os, "posix_fallocate", fallocate(errno.EOPNOTSUPP))
    with Journal.open(tmp_path / "nofalloc", segment_bytes=SMALL) as j2:
        j2.append_command(_order(1))
        j2.commit()
    assert [c.seq for c in iter_commands(tmp_path / "nofalloc")] == [1]
