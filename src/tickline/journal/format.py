"""On-disk format of the journal: segment files, record frames, and the scanner that checks them.

A journal is a directory of **segment files** ``segment-<index:010d>.tkj`` of one fixed size,
pre-allocated (``posix_fallocate``) and memory-mapped by the writer. Each segment starts with
a 64-byte header and is followed by back-to-back **records**; unused space is zero, so a zero
length word means "no more records here". When a record no longer fits, the writer appends a
*seal* record and continues in the next segment.

Segment header (64 bytes, little-endian)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------------------------------------------------------+
    |                    Magic "TICKJRNL" (8 bytes)                 |  0
    |                                                               |
    +-------------------------------+-------------------------------+
    |       Format Version (1)      |      Header Length (64)       |  8
    +-------------------------------+-------------------------------+
    |   Record Header Length (24)   |          Flags (0)            | 12
    +-------------------------------+-------------------------------+
    |                      Segment Index (u64)                      | 16
    |                                                               |
    +---------------------------------------------------------------+
    |                  Segment Size in bytes (u64)                  | 24
    |                                                               |
    +---------------------------------------------------------------+
    |     Base Sequence (i64): every record here has seq >= it,     | 32
    |        every record in earlier segments has seq < it          |
    +---------------------------------------------------------------+
    |                      Reserved (20 bytes, 0)                   | 40
    ...                                                           ...
    +---------------------------------------------------------------+
    |                 CRC32C of header bytes 0 .. 59                | 60
    +---------------------------------------------------------------+

Record frame (24-byte header + payload; records are packed without padding)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------------------------------------------------------+
    |            Frame Length (u32, header + payload bytes)         |  0
    +---------------------------------------------------------------+
    |         CRC32C of frame bytes 8 .. Frame Length - 1           |  4
    +---------------------------------------------------------------+
    |                   Sequence Number (i64)                       |  8
    |                                                               |
    +-------------------------------+-------------------------------+
    |       Record Type (u16)       |          Flags (u16)          | 16
    +-------------------------------+-------------------------------+
    |                      Reserved (u32, 0)                        | 20
    +---------------------------------------------------------------+
    |                    Payload (msgspec MessagePack)             ... 24
    ...                                                             |
    +---------------------------------------------------------------+

The CRC covers the sequence number, type, flags and payload. The length word is covered
implicitly: a wrong length makes the CRC run over the wrong bytes, and any length that
would run past the segment is rejected before the CRC is computed. A torn write (a crash in
the middle of copying a batch into the map) leaves a frame whose CRC does not match, or a
length pointing into zeros; the scanner stops at the first such frame and reports where.

Record types: ``1`` a :data:`~tickline.matching.Command` (the tagged msgspec union), ``0xFFFF``
the segment seal (empty payload, seq = the last sequence number written so far). Types
``2 .. 0xFFFE`` are free for other users of :meth:`Journal.append`; ``0`` is invalid.
Sequence numbers strictly increase across the whole journal (the seal repeats the last one).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c as _crc32c_mod
import msgspec

crc32c = _crc32c_mod.crc32c
"""CRC32C (Castagnoli), hardware accelerated: ``crc32c(data, value=0) -> int``."""

MAGIC = b"TICKJRNL"
FORMAT_VERSION = 1

SEGMENT_HEADER = struct.Struct("<8sHHHHQQq20xI")
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size  # 64
RECORD_HEADER = struct.Struct("<IIqHHI")
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 24
LENGTH_CRC = struct.Struct("<II")
"""The first 8 bytes of a frame: frame length and CRC."""
BODY_HEADER = struct.Struct("<qHHI")
"""Frame bytes 8 .. 23: sequence number, record type, flags, reserved (the CRC'd header)."""

RECORD_COMMAND = 1
RECORD_SEAL = 0xFFFF
MAX_RECORD_TYPE = 0xFFFE

SEGMENT_PATTERN = re.compile(r"^segment-(\d{10})\.tkj$")
MIN_SEGMENT_BYTES = 4096

assert SEGMENT_HEADER_SIZE == 64 and RECORD_HEADER_SIZE == 24


class JournalError(Exception):
    """Misuse of a journal (bad arguments, a closed journal, a foreign directory)."""


class JournalCorruptError(JournalError):
    """A segment, record or snapshot failed its checks; the message names file and offset."""


def segment_name(index: int) -> str:
    """File name of segment ``index`` (``segment-0000000001.tkj``)."""
    return f"segment-{index:010d}.tkj"


def numbered_files(directory: Path, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
    """The files of ``directory`` whose names match ``pattern`` (one group: a number), as
    ``(number, path)`` in ascending order; ``[]`` if the directory does not exist."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = pattern.match(name)
        if m:
            out.append((int(m.group(1)), directory / name))
    out.sort()
    return out


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of ``directory`` as ``(index, path)``, by index. Temporary files
    (``.*.tmp``) of an interrupted segment creation are ignored."""
    return numbered_files(directory, SEGMENT_PATTERN)


def pack_segment_header(index: int, size: int, base_seq: int) -> bytes:
    """The 64-byte header of a new segment, its CRC filled in."""
    raw = SEGMENT_HEADER.pack(MAGIC, FORMAT_VERSION, SEGMENT_HEADER_SIZE, RECORD_HEADER_SIZE, 0,
                              index, size, base_seq, 0)
    return raw[:60] + struct.pack("<I", crc32c(raw[:60]))


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """A decoded, checked segment header."""

    index: int
    size: int
    base_seq: int


def unpack_segment_header(data: bytes | memoryview, path: Path, file_size: int) -> SegmentHeader:
    """Decode and check a segment header; :class:`JournalCorruptError` naming ``path`` if the
    magic, version, CRC or recorded size is wrong."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise JournalCorruptError(f"{path}: offset 0: file too short for a segment header "
                                  f"({len(data)} bytes)")
    magic, version, hlen, rlen, _flags, index, size, base_seq, crc = SEGMENT_HEADER.unpack_from(
        data, 0)
    if magic != MAGIC:
        raise JournalCorruptError(f"{path}: offset 0: bad magic {magic!r}, expected {MAGIC!r}")
    if crc32c(bytes(data[:60])) != crc:
        raise JournalCorruptError(f"{path}: offset 60: segment header CRC mismatch")
    if version != FORMAT_VERSION or hlen != SEGMENT_HEADER_SIZE or rlen != RECORD_HEADER_SIZE:
        raise JournalCorruptError(
            f"{path}: offset 8: unsupported format version {version} "
            f"(header {hlen}, record header {rlen}); this build reads version {FORMAT_VERSION}")
    if size != file_size:
        raise JournalCorruptError(
            f"{path}: offset 24: header says {size} bytes but the file has {file_size}")
    return SegmentHeader(index=index, size=size, base_seq=base_seq)


class SegmentScan:
    """Walk the records of one segment image, checking each frame.

    Iterate :meth:`records` for ``(offset, seq, type, payload)`` of every valid record (the
    payload a ``memoryview`` slice of ``data``: decode or copy it before the next step). When
    the walk ends, :attr:`end` is the offset just past the last valid record, :attr:`last_seq`
    the last valid sequence number (``prev_seq`` if none), :attr:`sealed` whether a seal
    record closed the segment, and :attr:`error` says why the walk stopped early (``None``
    for a clean end: a zero length word, a seal, or the end of the segment).

    ``prev_seq`` is the last sequence number before this segment: records must exceed it.
    """

    __slots__ = ("applied", "count", "data", "end", "error", "last_seq", "limit", "sealed",
                 "start")

    def __init__(self, data: memoryview, prev_seq: int, *,
                 start: int = SEGMENT_HEADER_SIZE) -> None:
        self.data = data
        self.start = start
        self.limit = len(data)
        self.end = start
        self.last_seq = prev_seq
        self.count = 0
        self.applied = 0
        self.sealed = False
        self.error: str | None = None

    def records(self) -> Iterator[tuple[int, int, int, memoryview]]:
        """Yield every valid record; stop at the first invalid one (see the class doc)."""
        data = self.data
        limit = self.limit
        unpack = RECORD_HEADER.unpack_from
        crc = crc32c
        off = self.start
        last = self.last_seq
        count = 0
        hsize = RECORD_HEADER_SIZE
        try:
            while off + hsize <= limit:
                length, check, seq, rtype, _flags, _res = unpack(data, off)
                if length == 0:
                    if check or seq or rtype:
                        self.error = "zero frame length with a non-zero header (torn write)"
                    break
                end = off + length
                if length < hsize or end > limit:
                    self.error = f"frame length {length} out of range"
                    break
                if crc(data[off + 8:end]) != check:
                    self.error = f"CRC mismatch in record (length {length}, seq {seq})"
                    break
                if rtype == RECORD_SEAL:
                    if seq != last:
                        self.error = f"seal seq {seq} does not match the last seq {last}"
                        break
                    self.sealed = True
                    off = end
                    break
                if seq <= last:
                    self.error = f"sequence {seq} does not increase (previous {last})"
                    break
                if rtype == 0:
                    self.error = "record type 0 is invalid"
                    break
                last = seq
                count += 1
                self.end = end
                self.last_seq = seq
                self.count = count
                yield off, seq, rtype, data[off + hsize:end]
                off = end
        finally:
            self.end = off
            self.last_seq = last
            self.count = count

    def apply(self, after: int, stop: int, decode: Callable[[memoryview], Any],
              process: Callable[[Any], object], record_type: int = 1) -> bool:
        """The replay fast path: for every valid record of ``record_type`` with
        ``after < seq <= stop``, ``process(decode(payload))``, in one loop with no generator
        or tuple per record (:attr:`applied` counts the calls). Returns ``True`` if it
        stopped because a seq exceeded ``stop`` (the rest of the segment unread);
        otherwise the walk ended as :meth:`records` would,
        with :attr:`end`, :attr:`error` etc. set. A payload that passes its CRC but does not
        decode raises :class:`JournalCorruptError` (a writer bug or a foreign format, not a
        torn write)."""
        data = self.data
        limit = self.limit
        unpack = RECORD_HEADER.unpack_from
        crc = crc32c
        off = self.start
        last = self.last_seq
        count = 0
        hsize = RECORD_HEADER_SIZE
        stopped = False
        applied = 0
        try:
            while off + hsize <= limit:
                length, check, seq, rtype, _flags, _res = unpack(data, off)
                if length == 0:
                    if check or seq or rtype:
                        self.error = "zero frame length with a non-zero header (torn write)"
                    break
                end = off + length
                if length < hsize or end > limit:
                    self.error = f"frame length {length} out of range"
                    break
                if crc(data[off + 8:end]) != check:
                    self.error = f"CRC mismatch in record (length {length}, seq {seq})"
                    break
                if rtype == RECORD_SEAL:
                    if seq != last:
                        self.error = f"seal seq {seq} does not match the last seq {last}"
                        break
                    self.sealed = True
                    off = end
                    break
                if seq <= last or rtype == 0:
                    self.error = (f"sequence {seq} does not increase (previous {last})"
                                  if seq <= last else "record type 0 is invalid")
                    break
                if seq > stop:
                    stopped = True
                    break
                if seq > after and rtype == record_type:
                    process(decode(data[off + hsize:end]))
                    applied += 1
                last = seq
                count += 1
                off = end
        except msgspec.DecodeError as exc:
            raise JournalCorruptError(
                f"offset {off}: record passed its CRC but does not decode: {exc}") from None
        finally:
            self.end = off
            self.last_seq = last
            self.count = count
            self.applied = applied
        return stopped

    def run(self) -> SegmentScan:
        """Walk to the end without yielding (validation only); returns ``self``."""
        for _ in self.records():
            pass
        return self


def scan_tail_extent(data: memoryview, start: int) -> int:
    """Offset just past the last non-zero byte at or after ``start`` (``start`` if all zero):
    how far garbage after the last valid record reaches."""
    chunk = len(_ZERO_CHUNK)
    hi = len(data)
    while hi > start:
        lo = max(start, hi - chunk)
        part = data[lo:hi].tobytes()
        if part != _ZERO_CHUNK[:hi - lo]:  # memcmp: ~10 ms for a 64 MiB segment of zeros
            return lo + len(part.rstrip(b"\0"))
        hi = lo
    return start


_ZERO_CHUNK = bytes(1 << 20)
