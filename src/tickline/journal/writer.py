"""The journal writer: batched appends into memory-mapped, pre-allocated segments.

One :class:`Journal` has **one writer** (the sequencer of a shard); it is not safe to share
between threads or processes, and :meth:`Journal.open` enforces it across processes: it holds
the directory's writer lock (:mod:`tickline.journal.lock`) until :meth:`Journal.close`, so a
second writer fails with :class:`~tickline.journal.lock.JournalLocked`. Readers
(:func:`~tickline.journal.iter_commands`, replay, verify) take no lock: they open the files
independently and see every committed record.

Write path, designed around per-record Python overhead (see docs/benchmarks.md):

* a command is encoded with one reused ``msgspec.msgpack.Encoder``; its frame is built with
  two precompiled ``struct.Struct`` packs and one CRC32C call, appended to a ``bytearray``
  batch buffer (``append_many`` frames a whole batch in one call of
  :func:`~tickline.journal.framing.frame_commands`, compiled in the compiled build);
* :meth:`Journal.commit` copies the buffer into the mapped segment with a single slice
  assignment, then applies the durability policy: ``batch`` msyncs the dirty pages before
  returning, ``interval`` only if ``interval_ms`` passed since the last sync, ``none`` leaves
  them to the page cache (they survive a process crash, not a power loss).

Records appended but not committed are not in the segment: a crash loses them, which is
correct, because nothing was acknowledged for them.
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import msgspec

from tickline.journal.format import (
    BODY_HEADER,
    LENGTH_CRC,
    MAX_RECORD_TYPE,
    MIN_SEGMENT_BYTES,
    RECORD_COMMAND,
    RECORD_HEADER_SIZE,
    RECORD_SEAL,
    SEGMENT_HEADER_SIZE,
    JournalCorruptError,
    JournalError,
    SegmentScan,
    crc32c,
    list_segments,
    pack_segment_header,
    scan_tail_extent,
    segment_name,
    unpack_segment_header,
)
from tickline.journal.framing import frame_commands
from tickline.journal.lock import DirectoryLock
from tickline.journal.snapshot import (
    JournalMeta,
    fsync_dir,
    list_snapshots,
    read_meta,
    write_meta,
    write_snapshot_file,
)
from tickline.matching import Command, EngineConfig, EngineSnapshot, Instrument

_PAGE = mmap.PAGESIZE
_NO_FALLOCATE = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})
"""posix_fallocate errors meaning "this filesystem cannot preallocate" (a sparse segment
then); any other error (a full disk above all) fails the segment's creation."""
QUARANTINE = "quarantine"


class Durability(StrEnum):
    """When committed records reach the disk.

    * ``none``: never forced; the page cache writes them back (a process crash loses
      nothing committed, a power loss may lose seconds);
    * ``batch``: every :meth:`Journal.commit` msyncs before returning (acknowledge after
      commit: nothing acknowledged is ever lost); the slowest;
    * ``interval``: a commit msyncs only if ``interval_ms`` passed since the last sync: at most
      that window (plus the time to the next commit) of acknowledged records can be lost.
    """

    NONE = "none"
    BATCH = "batch"
    INTERVAL = "interval"


@dataclass(frozen=True, slots=True)
class TailRepair:
    """What a repair of the journal's tail found and did (see :func:`repair_tail`)."""

    truncated_bytes: int = 0
    file: str | None = None
    offset: int | None = None
    reason: str | None = None
    quarantined: tuple[str, ...] = ()


_EMPTY_REPAIR = TailRepair()


def _quarantine_bytes(directory: Path, name: str, data: bytes) -> str:
    qdir = directory / QUARANTINE
    qdir.mkdir(exist_ok=True)
    path = qdir / name
    n = 0
    while path.exists():
        n += 1
        path = qdir / f"{name}.{n}"
    path.write_bytes(data)
    return str(path)


def cut_journal(directory: Path, seg_pos: int, offset: int, reason: str) -> TailRepair:
    """Discard everything from ``offset`` of the ``seg_pos``-th segment (0-based position in
    :func:`list_segments`) onward: the bytes there are copied into ``quarantine/`` and zeroed,
    later segments are moved into ``quarantine/`` (and this one too if ``offset`` is inside
    its header). Returns what was done.

    This is how a torn or corrupt tail is truncated: what follows a bad record cannot be
    trusted to be a prefix of what was written, but it is kept for an operator to inspect.
    """
    segments = list_segments(directory)
    index, path = segments[seg_pos]
    quarantined: list[str] = []
    truncated = 0
    if offset < SEGMENT_HEADER_SIZE:  # the segment itself is bad: move it whole
        seg_pos -= 1
    else:
        truncated = _cut_segment(directory, path, offset, quarantined)
    for _idx, later in segments[seg_pos + 1:]:
        truncated += max(0, len(later.read_bytes().rstrip(b"\0")) - SEGMENT_HEADER_SIZE)
        target = directory / QUARANTINE / later.name
        target.parent.mkdir(exist_ok=True)
        os.replace(later, target)
        quarantined.append(str(target))
    fsync_dir(directory)
    del index
    return TailRepair(truncated_bytes=truncated, file=str(path), offset=offset, reason=reason,
                      quarantined=tuple(quarantined))


def _cut_segment(directory: Path, path: Path, offset: int, quarantined: list[str]) -> int:
    """Quarantine and zero the non-zero bytes of ``path`` from ``offset``; returns how many."""
    truncated = 0
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        if size > offset:
            with mmap.mmap(f.fileno(), size) as mm:
                view = memoryview(mm)
                try:
                    extent = scan_tail_extent(view, offset)
                    if extent > offset:
                        truncated += extent - offset
                        quarantined.append(_quarantine_bytes(
                            directory, f"{path.name}.at-{offset}", bytes(view[offset:extent])))
                        view[offset:extent] = bytes(extent - offset)
                        mm.flush()
                finally:
                    view.release()
    return truncated


def _check_last_segment(directory: Path) -> tuple[TailRepair, int, bool, int]:
    """Scan the last segment; truncate a torn/corrupt tail. Returns the repair, the valid end
    offset, whether it is sealed, and its last seq (base_seq - 1 if empty)."""
    segments = list_segments(directory)
    index, path = segments[-1]
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                header = unpack_segment_header(view, path, size)
                scan = SegmentScan(view, header.base_seq - 1).run()
                extent = scan_tail_extent(view, scan.end) if not scan.sealed else scan.end
            finally:
                view.release()
    del index
    repair = _EMPTY_REPAIR
    if scan.error is not None or extent > scan.end:
        reason = scan.error or "non-zero bytes after the last valid record"
        repair = cut_journal(directory, len(segments) - 1, scan.end, reason)
    return repair, scan.end, scan.sealed, scan.last_seq


class Journal:
    """An open journal directory, positioned after its last valid record. Single writer.

    Use :meth:`open`. ``append*`` frames records into a batch buffer; :meth:`commit` writes
    the batch into the mapped segment and applies the durability policy. ``last_seq`` is the
    last appended sequence number (committed or not), ``committed_seq`` the last committed.
    """

    def __init__(self, directory: Path, durability: Durability, interval_ms: int,
                 segment_bytes: int, keep_snapshots: int) -> None:
        self.directory = directory
        self.durability = durability
        self.interval_ns = interval_ms * 1_000_000
        self.segment_bytes = segment_bytes
        self.keep_snapshots = keep_snapshots
        self.open_repair: TailRepair = _EMPTY_REPAIR
        self.last_seq = 0
        self.committed_seq = 0
        self.last_snapshot_seq = 0
        self.segment_index = 0
        self.syncs = 0
        self.commits = 0
        self.bytes_committed = 0
        self._buf = bytearray()
        self._pos = 0
        self._limit = 0  # last offset a record may end at (room is kept for the seal)
        self._synced = 0
        self._last_sync_ns = time.monotonic_ns()
        self._fd = -1
        self._mm: mmap.mmap | None = None
        self._sealed = True  # no writable segment yet: the first append creates one
        self._encode = msgspec.msgpack.Encoder().encode
        self._closed = False
        self._lock: DirectoryLock | None = None

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path | str,
        *,
        durability: Durability | str = "batch",
        interval_ms: int = 5,
        segment_bytes: int = 64 << 20,
        instruments: Iterable[Instrument] | None = None,
        config: EngineConfig | None = None,
        keep_snapshots: int = 3,
        lock: DirectoryLock | None = None,
    ) -> Journal:
        """Open (creating if needed) the journal in ``directory`` for writing.

        The directory's writer lock is taken first (or ``lock``, already held by the caller,
        is taken over) and held until :meth:`close`; :class:`JournalLocked` if another
        writer holds it, naming the directory and the holder's pid.

        The last segment is scanned; a torn or corrupt tail is truncated (kept in
        ``quarantine/``) and described in :attr:`open_repair`. ``instruments``/``config``,
        when given, are recorded in ``journal.meta`` (see :meth:`set_metadata`).
        ``segment_bytes`` applies to segments created from now on. ``keep_snapshots`` is how
        many snapshot files :meth:`write_snapshot` keeps (older ones are deleted).
        """
        directory = Path(directory)
        try:
            dur = Durability(durability)
        except ValueError:
            raise JournalError(
                f"durability must be one of none, batch, interval; got {durability!r}") from None
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise JournalError(
                f"segment_bytes must be >= {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        if interval_ms < 0:
            raise JournalError(f"interval_ms must be >= 0, got {interval_ms}")
        if lock is not None and (not lock.held
                                 or lock.directory.resolve() != directory.resolve()):
            raise JournalError(f"lock= must be the held writer lock of {directory}; got the "
                               f"lock of {lock.directory} (held: {lock.held})")
        owned = lock if lock is not None else DirectoryLock.acquire(directory)
        try:
            j = cls._open_locked(directory, dur, interval_ms, segment_bytes, keep_snapshots,
                                 instruments, config)
        except BaseException:
            if lock is None:  # a lock the caller passed stays the caller's on failure
                owned.release()
            raise
        j._lock = owned
        return j

    @classmethod
    def _open_locked(cls, directory: Path, dur: Durability, interval_ms: int,
                     segment_bytes: int, keep_snapshots: int,
                     instruments: Iterable[Instrument] | None,
                     config: EngineConfig | None) -> Journal:
        for name in os.listdir(directory):  # an interrupted segment or snapshot write
            if name.startswith((".segment-", ".snapshot-")) and name.endswith(".tmp"):
                os.unlink(directory / name)  # safe: no other writer (we hold the lock)
        j = cls(directory, dur, interval_ms, segment_bytes, keep_snapshots)
        snaps = list_snapshots(directory)
        j.last_snapshot_seq = snaps[-1][0] if snaps else 0
        segments = list_segments(directory)
        if segments:
            repair, end, sealed, last = _check_last_segment(directory)
            j.open_repair = repair
            index, path = segments[-1]
            j.segment_index = index
            j.last_seq = j.committed_seq = last
            if not sealed:
                j._map(path, end)
        # a snapshot may be ahead of a journal that lost its unsynced tail: never reuse seqs
        j.last_seq = j.committed_seq = max(j.last_seq, j.last_snapshot_seq)
        if instruments is not None or config is not None:
            j.set_metadata(instruments or (), config)
        return j

    def set_metadata(self, instruments: Iterable[Instrument],
                     config: EngineConfig | None = None) -> None:
        """Record the instruments and engine config in ``journal.meta``. Instruments already
        recorded must be identical; new ones are added. A different config is an error."""
        meta = read_meta(self.directory)
        new = list(instruments)
        if meta is None:
            meta = JournalMeta(instruments=new, config=config or EngineConfig())
            write_meta(self.directory, meta)
            return
        known = {i.symbol: i for i in meta.instruments}
        changed = False
        for inst in new:
            old = known.get(inst.symbol)
            if old is None:
                meta.instruments.append(inst)
                changed = True
            elif old != inst:
                raise JournalError(f"instrument {inst.symbol!r} differs from the one recorded "
                                   f"in {self.directory / 'journal.meta'}: {old!r}")
        if config is not None and config != meta.config:
            raise JournalError(f"engine config {config!r} differs from the recorded "
                               f"{meta.config!r}")
        if changed:
            write_meta(self.directory, meta)

    def _map(self, path: Path, pos: int) -> None:
        fd = os.open(path, os.O_RDWR)
        size = os.fstat(fd).st_size
        self._fd = fd
        self._mm = mmap.mmap(fd, size)
        self._pos = pos
        self._synced = pos
        self._limit = size - RECORD_HEADER_SIZE
        self._sealed = False

    def _create_segment(self, base_seq: int) -> None:
        index = self.segment_index + 1
        size = self.segment_bytes
        final = self.directory / segment_name(index)
        tmp = self.directory / f".{final.name}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                os.posix_fallocate(fd, 0, size)  # real blocks: no SIGBUS on a full disk later
            except OSError as e:
                if e.errno not in _NO_FALLOCATE:  # ENOSPC, EFBIG, EIO...: no segment
                    os.close(fd)
                    fd = -1
                    os.unlink(tmp)
                    raise JournalError(f"cannot allocate journal segment {final.name} "
                                       f"({size} bytes): {e.strerror}") from e
                os.ftruncate(fd, size)  # a filesystem without fallocate: sparse file
            os.pwrite(fd, pack_segment_header(index, size, base_seq), 0)
            if self.durability is not Durability.NONE:
                os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)
        os.replace(tmp, final)
        if self.durability is not Durability.NONE:
            fsync_dir(self.directory)
        self.segment_index = index
        self._map(final, SEGMENT_HEADER_SIZE)

    def _roll(self, need: int, last: int) -> None:
        """The pending record of ``need`` bytes does not fit: spill the buffer, seal this
        segment (synced unless durability is none), and start the next one. ``last`` is the
        sequence number of the last record already framed (the seal repeats it; the next
        segment's base sequence is ``last + 1``)."""
        if need > self.segment_bytes - SEGMENT_HEADER_SIZE - RECORD_HEADER_SIZE:
            raise JournalError(f"record of {need} bytes does not fit in a segment of "
                               f"{self.segment_bytes} bytes")
        mm = self._mm
        if mm is not None and not self._sealed:
            buf = self._buf
            pos = self._pos
            if buf:
                mm[pos:pos + len(buf)] = buf
                pos += len(buf)
                self.bytes_committed += len(buf)
                buf.clear()
            body = BODY_HEADER.pack(last, RECORD_SEAL, 0, 0)
            mm[pos:pos + RECORD_HEADER_SIZE] = LENGTH_CRC.pack(RECORD_HEADER_SIZE,
                                                               crc32c(body)) + body
            pos += RECORD_HEADER_SIZE
            self._pos = pos
            if self.durability is not Durability.NONE:
                self._sync()
        self._unmap()
        self._create_segment(last + 1)

    def _unmap(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._sealed = True

    # -- appending ----------------------------------------------------------------------

    def append_command(self, cmd: Command) -> None:
        """Frame ``cmd`` (sequence number ``cmd.seq``, which must increase) into the batch.
        It reaches the segment at the next :meth:`commit`."""
        self.append(cmd.seq, RECORD_COMMAND, self._encode(cmd))

    def append_many(self, cmds: Iterable[Command]) -> int:
        """Frame many commands (each ``seq`` increasing) into the batch in one call; returns
        how many. The same bytes as ``append_command`` for each, about 1.5x faster
        (:func:`~tickline.journal.framing.frame_commands`, compiled in the compiled
        build)."""
        return frame_commands(self, cmds, self._encode, self._roll)

    def append(self, seq: int, record_type: int, payload: bytes) -> None:
        """Frame a raw record (``record_type`` 1 .. 0xFFFE; 1 means the payload is a
        msgpack-encoded :data:`~tickline.matching.Command`) into the batch."""
        last = self.last_seq
        if seq <= last:
            raise JournalError(f"sequence numbers must increase: got {seq} after {last}")
        if not 1 <= record_type <= MAX_RECORD_TYPE:
            raise JournalError(f"record_type must be in 1..{MAX_RECORD_TYPE}, got {record_type}")
        body = BODY_HEADER.pack(seq, record_type, 0, 0) + payload
        n = len(body) + 8
        buf = self._buf
        if self._pos + len(buf) + n > self._limit:
            self._roll(n, last)
        buf += LENGTH_CRC.pack(n, crc32c(body))
        buf += body
        self.last_seq = seq

    def commit(self) -> None:
        """End of a batch: write the buffered records into the segment and apply the
        durability policy. After it returns (``batch``), every appended record is on disk."""
        if self._closed:
            raise JournalError(f"journal {self.directory} is closed")
        buf = self._buf
        if buf:
            mm = self._mm
            assert mm is not None, "records are only buffered with a segment mapped"
            pos = self._pos
            end = pos + len(buf)
            mm[pos:end] = buf
            self._pos = end
            self.bytes_committed += end - pos
            buf.clear()
        self.commits += 1
        self.committed_seq = self.last_seq
        durability = self.durability
        if durability is Durability.BATCH:
            self._sync()
        elif durability is Durability.INTERVAL:
            now = time.monotonic_ns()
            if now - self._last_sync_ns >= self.interval_ns:
                self._sync()

    @property
    def unsynced(self) -> bool:
        """True if committed records may still be only in the page cache."""
        return self._mm is not None and self._pos > self._synced

    def sync(self) -> None:
        """Force committed records to disk now, whatever the policy (e.g. on an idle timer
        with ``interval``, so the loss window holds even when no commit comes)."""
        self._sync()

    def _sync(self) -> None:
        mm = self._mm
        pos = self._pos
        if mm is not None and pos > self._synced:
            start = self._synced - self._synced % _PAGE
            mm.flush(start, pos - start)
            self._synced = pos
            self.syncs += 1
        self._last_sync_ns = time.monotonic_ns()

    # -- snapshots and closing ------------------------------------------------------------

    def write_snapshot(self, snap: EngineSnapshot) -> Path:
        """Commit and sync the journal, then write ``snap`` atomically (temp file, fsync,
        rename, fsync of the directory) as ``snapshot-<last_seq>.tks``. Older snapshots
        beyond ``keep_snapshots`` are deleted. Returns the path."""
        return self.snapshot_writer(snap)()

    def snapshot_writer(self, snap: EngineSnapshot) -> Callable[[], Path]:
        """Commit and sync the journal *now*, and return the rest of :meth:`write_snapshot`
        as a function that may run on another thread (it touches only snapshot files).
        The exchange loop uses it to keep the encode, write and fsyncs of a big snapshot
        off the event loop."""
        if snap.last_seq > self.last_seq:
            raise JournalError(f"snapshot at seq {snap.last_seq} is ahead of the journal "
                               f"(last seq {self.last_seq})")
        self.commit()
        self._sync()
        directory = self.directory
        keep = self.keep_snapshots

        def write() -> Path:
            path = write_snapshot_file(directory, snap)
            self.last_snapshot_seq = max(self.last_snapshot_seq, snap.last_seq)
            snaps = list_snapshots(directory)
            for _seq, old in snaps[:max(0, len(snaps) - keep)]:
                old.unlink(missing_ok=True)
            return path

        return write

    def close(self) -> None:
        """Commit what is buffered, sync (unless durability is none), unmap and release the
        writer lock (also when the final commit or sync fails)."""
        if self._closed:
            return
        try:
            self.commit()
            if self.durability is not Durability.NONE:
                self._sync()
        finally:
            self._unmap()
            self._closed = True
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> dict[str, int | str]:
        """Counters of this writer (single-writer: read them from the writer's thread)."""
        return {
            "durability": str(self.durability), "last_seq": self.last_seq,
            "committed_seq": self.committed_seq, "segment_index": self.segment_index,
            "segment_offset": self._pos, "commits": self.commits, "syncs": self.syncs,
            "buffered_bytes": len(self._buf), "bytes_committed": self.bytes_committed,
            "last_snapshot_seq": self.last_snapshot_seq,
        }


__all__ = ["Durability", "Journal", "JournalCorruptError", "JournalError", "TailRepair",
           "cut_journal"]
