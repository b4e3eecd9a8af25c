"""Engine snapshots and journal metadata, written atomically next to the segments.

Snapshot file ``snapshot-<last_seq:020d>.tks`` (32-byte header + msgspec MessagePack of
:class:`~tickline.matching.EngineSnapshot`)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------------------------------------------------------+
    |                    Magic "TICKSNAP" (8 bytes)                 |  0
    |                                                               |
    +-------------------------------+-------------------------------+
    |       Format Version (1)      |          Reserved (0)         |  8
    +-------------------------------+-------------------------------+
    |                    Payload Length (u32)                       | 12
    +---------------------------------------------------------------+
    |               Last Sequence Number (i64)                      | 16
    |                                                               |
    +---------------------------------------------------------------+
    |                CRC32C of bytes 16..23 and the payload         | 24
    +---------------------------------------------------------------+
    |                        Reserved (0)                           | 28
    +---------------------------------------------------------------+
    |                   Payload (EngineSnapshot)                   ... 32

Writing is atomic: the bytes go to ``.snapshot-<seq>.tmp``, which is fsynced, renamed into
place, and the directory fsynced. A crash leaves either no new snapshot or a complete one;
a leftover temporary file is ignored by recovery and removed by the next writer. A write that
fails (a full disk above all) removes its temporary file at once — a partial file must not
take the space the journal needs next — and raises :class:`SnapshotError`. A missing
snapshot costs only recovery time: the journal is the source of truth.

``journal.meta`` (JSON, also written atomically) records the instruments and engine
configuration the journal was written with, so ``tickline replay`` needs no other input.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from pathlib import Path

import msgspec

from tickline.journal.format import JournalCorruptError, JournalError, crc32c, numbered_files
from tickline.matching import EngineConfig, EngineSnapshot, Instrument

SNAP_MAGIC = b"TICKSNAP"
SNAP_VERSION = 1
SNAP_HEADER = struct.Struct("<8sHHIqII")
SNAP_HEADER_SIZE = SNAP_HEADER.size  # 32
SNAPSHOT_PATTERN = re.compile(r"^snapshot-(\d{20})\.tks$")
META_NAME = "journal.meta"

_snap_encoder = msgspec.msgpack.Encoder()
_snap_decoder = msgspec.msgpack.Decoder(EngineSnapshot)


class JournalMeta(msgspec.Struct, kw_only=True):
    """What a journal was written with: enough to rebuild an engine for replay."""

    format_version: int = 1
    instruments: list[Instrument]
    config: EngineConfig = msgspec.field(default_factory=EngineConfig)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename or a new file in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotError(JournalError):
    """A snapshot file could not be written (``path``: the snapshot it was to become;
    ``cause``: the ``OSError``). Nothing is left behind and the journal is untouched."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(f"snapshot {path} not written: {cause.strerror or cause} "
                         f"(the journal is intact; recovery replays from an older snapshot)")
        self.path = path
        self.cause = cause


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, fsync, rename, fsync of the dir.
    On any failure the temporary file is removed before the error propagates."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def snapshot_name(last_seq: int) -> str:
    """File name of the snapshot taken after ``last_seq``."""
    return f"snapshot-{last_seq:020d}.tks"


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """Snapshot files as ``(last_seq, path)``, oldest first (by the seq in the name)."""
    return numbered_files(directory, SNAPSHOT_PATTERN)


def encode_snapshot(snap: EngineSnapshot) -> bytes:
    """The full file image of a snapshot (header + payload)."""
    payload = _snap_encoder.encode(snap)
    seq_bytes = struct.pack("<q", snap.last_seq)
    crc = crc32c(payload, crc32c(seq_bytes))
    return SNAP_HEADER.pack(SNAP_MAGIC, SNAP_VERSION, 0, len(payload), snap.last_seq,
                            crc, 0) + payload


def write_snapshot_file(directory: Path, snap: EngineSnapshot) -> Path:
    """Write ``snap`` atomically as ``snapshot-<last_seq>.tks`` in ``directory``;
    :class:`SnapshotError` (temporary file removed) if the filesystem refuses."""
    path = directory / snapshot_name(snap.last_seq)
    try:
        atomic_write(path, encode_snapshot(snap))
    except OSError as exc:
        raise SnapshotError(path, exc) from exc
    return path


def read_snapshot(path: Path) -> EngineSnapshot:
    """Read and check one snapshot file; :class:`JournalCorruptError` naming the file and the
    offset of the problem if its header, CRC or payload is bad."""
    data = path.read_bytes()
    if len(data) < SNAP_HEADER_SIZE:
        raise JournalCorruptError(f"{path}: offset 0: too short for a snapshot header "
                                  f"({len(data)} bytes)")
    magic, version, _r, length, last_seq, crc, _r2 = SNAP_HEADER.unpack_from(data, 0)
    if magic != SNAP_MAGIC:
        raise JournalCorruptError(f"{path}: offset 0: bad magic {magic!r}")
    if version != SNAP_VERSION:
        raise JournalCorruptError(f"{path}: offset 8: unsupported snapshot version {version}")
    if SNAP_HEADER_SIZE + length != len(data):
        raise JournalCorruptError(
            f"{path}: offset 12: payload length {length} does not match the file size "
            f"{len(data)}")
    payload = memoryview(data)[SNAP_HEADER_SIZE:]
    if crc32c(payload, crc32c(data[16:24])) != crc:
        raise JournalCorruptError(f"{path}: offset {SNAP_HEADER_SIZE}: snapshot CRC mismatch")
    try:
        snap = _snap_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise JournalCorruptError(
            f"{path}: offset {SNAP_HEADER_SIZE}: undecodable snapshot: {exc}") from None
    if snap.last_seq != last_seq:
        raise JournalCorruptError(f"{path}: offset 16: header seq {last_seq} but payload "
                                  f"seq {snap.last_seq}")
    return snap


def write_meta(directory: Path, meta: JournalMeta) -> None:
    """Write ``journal.meta`` atomically."""
    atomic_write(directory / META_NAME, msgspec.json.format(msgspec.json.encode(meta)) + b"\n")


def read_meta(directory: Path) -> JournalMeta | None:
    """``journal.meta`` of ``directory``, or ``None`` if there is none;
    :class:`JournalCorruptError` if it does not decode."""
    path = directory / META_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=JournalMeta)
    except (msgspec.DecodeError, ValueError) as exc:
        raise JournalCorruptError(f"{path}: offset 0: undecodable metadata: {exc}") from None
