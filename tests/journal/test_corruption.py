"""Flipped bytes, torn and truncated tails, bad snapshots: detected, named, truncated."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tickline.journal import (
    Journal,
    JournalCorruptError,
    iter_commands,
    recover,
    verify,
)
from tickline.journal.format import RECORD_HEADER, SEGMENT_HEADER_SIZE, list_segments
from tickline.journal.snapshot import list_snapshots

from .conftest import SMALL, Mix


def _record_offsets(path: Path) -> list[tuple[int, int, int]]:
    """``(offset, length, seq)`` of each record in a segment file (seal included)."""
    data = path.read_bytes()
    out = []
    off = SEGMENT_HEADER_SIZE
    while off + 24 <= len(data):
        length, _c, seq, _t, _f, _r = RECORD_HEADER.unpack_from(data, off)
        if length == 0:
            break
        out.append((off, length, seq))
        off += length
    return out


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x40]))


def test_flipped_payload_byte_is_found_and_the_tail_truncated(
        journal_of: Callable[..., Path], mix: Mix) -> None:
    d = journal_of(segment_bytes=16384)
    segments = list_segments(d)
    victim = segments[len(segments) // 2][1]
    off, length, seq = _record_offsets(victim)[10]
    _flip(victim, off + length - 3)

    report = verify(d)
    assert not report.ok
    assert report.problems == [f"{victim}: offset {off}: CRC mismatch in record "
                               f"(length {length}, seq {seq})"]
    with pytest.raises(JournalCorruptError, match=f"offset {off}: CRC mismatch"):
        list(iter_commands(d, strict=True))
    assert [c.seq for c in iter_commands(d)] == list(range(1, seq))  # the valid prefix
    with pytest.raises(JournalCorruptError):
        recover(d, truncate=False)

    engine, rec = recover(d)
    assert rec.truncated and rec.truncated_file == str(victim) and rec.truncated_offset == off
    assert rec.last_seq == seq - 1 and rec.records_replayed == seq - 1
    assert rec.truncated_bytes > length  # the record and everything after it
    assert len(rec.quarantined) == len(segments) - segments.index(
        (segments[len(segments) // 2][0], victim))  # tail bytes + every later segment
    assert engine.digest() == mix.digest_after(seq - 1)
    after = verify(d)
    assert after.ok, after.problems
    assert any("quarantine" in w for w in after.warnings)
    with Journal.open(d, segment_bytes=SMALL) as j:  # continues after the valid prefix
        assert j.last_seq == seq - 1
        j.append_many(mix.commands[seq - 1:seq + 99])
    assert [c.seq for c in iter_commands(d)] == list(range(1, seq + 100))
    assert verify(d).ok


@pytest.mark.parametrize("keep", [4, 8, 16, 24, 30])
def test_torn_last_record_is_detected_and_truncated(
        journal_of: Callable[..., Path], mix: Mix, keep: int) -> None:
    """The last record was only partly copied into the map when the process died: only its
    first ``keep`` bytes arrived, the rest is still zero."""
    d = journal_of(n=1000)
    (_, path), = list_segments(d)
    off, length, seq = _record_offsets(path)[-1]
    with open(path, "r+b") as f:
        f.seek(off + keep)
        f.write(bytes(length - keep))
    report = verify(d)
    assert not report.ok and report.problems[0].startswith(f"{path}: offset {off}: ")
    assert seq == 1000
    engine, rec = recover(d)
    assert rec.truncated and rec.truncated_offset == off and rec.last_seq == 999
    assert 0 < rec.truncated_bytes <= keep
    assert engine.digest() == mix.digest_after(999)
    assert verify(d).ok
    assert Journal.open(d, segment_bytes=SMALL).last_seq == 999


def test_garbage_after_the_last_record_is_detected(journal_of: Callable[..., Path]) -> None:
    d = journal_of(n=300)
    (_, path), = list_segments(d)
    off, length, _seq = _record_offsets(path)[-1]
    end = off + length
    with open(path, "r+b") as f:  # a torn header: zero length word, junk after it
        f.seek(end + 40)
        f.write(b"\x07junk")
    report = verify(d)
    assert report.problems == [f"{path}: offset {end}: non-zero bytes after the last valid "
                               f"record (up to offset {end + 45})"]
    _engine, rec = recover(d)
    assert rec.truncated_bytes == 45  # from the cut to the last non-zero byte
    assert verify(d).ok
    # Journal.open repairs the same way when recover() was not run first
    with open(path, "r+b") as f:
        f.seek(end + 100)
        f.write(b"\x01")
    j = Journal.open(d, segment_bytes=SMALL)
    assert j.open_repair.truncated_bytes == 101 and j.open_repair.offset == end
    j.close()


def test_truncated_segment_file_is_named(journal_of: Callable[..., Path]) -> None:
    d = journal_of(segment_bytes=8192)
    segments = list_segments(d)
    path = segments[-1][1]
    os.truncate(path, 5000)
    report = verify(d)
    assert f"{path}: offset 24: header says 8192 bytes but the file has 5000" in report.problems
    _engine, rec = recover(d)
    assert rec.truncated and rec.truncated_offset == 0
    assert not path.exists()  # the whole segment went to quarantine
    assert verify(d).ok


def test_missing_middle_segment_is_corruption(journal_of: Callable[..., Path]) -> None:
    d = journal_of(segment_bytes=8192)
    segments = list_segments(d)
    gone = segments[3][1]
    gone.unlink()
    report = verify(d)
    assert any("segment index 5 does not follow 3 (a segment is missing)" in p
               for p in report.problems)
    assert not report.ok


def test_corrupt_snapshot_is_reported_and_an_older_one_used(
        journal_of: Callable[..., Path], mix: Mix) -> None:
    d = journal_of(snapshot_at=(2000, 5000))
    snaps = list_snapshots(d)
    assert [s for s, _ in snaps] == [2000, 5000]
    newest = snaps[-1][1]
    _flip(newest, 100)
    report = verify(d)
    assert report.problems == [f"{newest}: offset 32: snapshot CRC mismatch"]
    engine, rec = recover(d)
    assert rec.snapshot_seq == 2000 and len(rec.snapshots_rejected) == 1
    assert rec.records_replayed == len(mix.commands) - 2000
    assert engine.digest() == mix.digest_after(len(mix.commands))
    assert not rec.truncated
