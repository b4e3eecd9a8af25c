"""Reading a journal back: iteration, recovery, replay, comparison and verification.

Everything here opens the files read-only and independently of a writer (never taking its
lock, never modifying a file: safe beside a running server), except :func:`recover`, which
truncates a torn or corrupt tail (see :func:`~tickline.journal.writer.cut_journal`) so that
the journal is a valid prefix again, and therefore holds the directory's writer lock.

Cost model of replay (docs/benchmarks.md has the numbers): *reading* a record (frame check
with CRC32C over a ``memoryview`` of the mapped file) costs a fraction of *decoding* it
(msgspec), and both cost a fraction of *applying* it (``MatchingEngine.process``). Recovery
therefore starts from the newest valid snapshot and reads, but does not decode, the records
the snapshot already covers in its segment.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec

from tickline.journal.format import (
    RECORD_COMMAND,
    SEGMENT_HEADER_SIZE,
    JournalCorruptError,
    JournalError,
    SegmentHeader,
    SegmentScan,
    list_segments,
    scan_tail_extent,
    unpack_segment_header,
)
from tickline.journal.lock import DirectoryLock, writer_alive
from tickline.journal.snapshot import (
    JournalMeta,
    list_snapshots,
    read_meta,
    read_snapshot,
)
from tickline.journal.writer import QUARANTINE, TailRepair, cut_journal
from tickline.matching import Command, EngineConfig, Event, Instrument, MatchingEngine
from tickline.matching.book import Order
from tickline.matching.engine import EngineSnapshot

_decoder = msgspec.msgpack.Decoder(Command)
REPLAY_BATCH = 512
"""Commands decoded before they are applied with one ``process_many`` call (bounds the
decoded commands held at once)."""
_event_encoder = msgspec.msgpack.Encoder()


class Record(NamedTuple):
    """One raw journal record, as :func:`iter_records` yields it."""

    seq: int
    type: int
    payload: bytes
    segment: Path
    offset: int


class RecoveryReport(msgspec.Struct, kw_only=True):
    """What :func:`recover` did: which snapshot it used, how many records it read and
    replayed, where it truncated a bad tail, and how long it took."""

    last_seq: int = 0
    snapshot_path: str | None = None
    snapshot_seq: int = 0
    snapshots_rejected: list[str] = msgspec.field(default_factory=list)
    segments: int = 0
    records_scanned: int = 0
    records_replayed: int = 0
    truncated_bytes: int = 0
    truncated_file: str | None = None
    truncated_offset: int | None = None
    truncation_reason: str | None = None
    quarantined: list[str] = msgspec.field(default_factory=list)
    seconds: float = 0.0

    @property
    def truncated(self) -> bool:
        """Whether a torn or corrupt tail was cut off."""
        return self.truncation_reason is not None


def _mapped(path: Path) -> tuple[SegmentHeader, memoryview]:
    """Map a segment read-only; return its checked header and a view of the whole file.

    The map is never closed explicitly: it is released when the last view (or payload
    slice a caller kept) goes away, so an abandoned iteration cannot leave a closed map
    under a live slice, nor fail to close one that still has exports.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < SEGMENT_HEADER_SIZE:
            raise JournalCorruptError(f"{path}: offset 0: file too short for a segment "
                                      f"header ({size} bytes)")
        view = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    return unpack_segment_header(view, path, size), view


def _read_base_seq(path: Path) -> int:
    with open(path, "rb") as f:
        data = f.read(SEGMENT_HEADER_SIZE)
        size = os.fstat(f.fileno()).st_size
    return unpack_segment_header(data, path, size).base_seq


def _start_position(segments: list[tuple[int, Path]], from_seq: int) -> int:
    """Position of the last segment whose base seq is <= ``from_seq`` (0 if none): records
    with ``seq >= from_seq`` are all in it or after it. Reads only segment headers."""
    lo, hi = 0, len(segments) - 1
    best = 0
    while lo <= hi:  # base seqs increase with the index: binary search
        mid = (lo + hi) // 2
        try:
            base = _read_base_seq(segments[mid][1])
        except JournalCorruptError:
            return best if best <= mid else 0
        if base <= from_seq:
            best = mid
            lo = mid + 1
        else:
            hi = mid - 1
    return best


class _Walk:
    """Walk the records of a journal from a sequence number on, checking segment headers,
    seals and continuity. Stops at the first problem and records it in :attr:`problem`
    as ``(segment position, offset, reason)``. ``check_tail`` also checks that the unused
    space after the last record is zero (a full read of the pre-allocated tail; recovery
    and verification need it, plain reading does not)."""

    def __init__(self, directory: Path, from_seq: int = 0, *, check_tail: bool = True) -> None:
        self.directory = directory
        self.check_tail = check_tail
        self.segments = list_segments(directory)
        self.start = _start_position(self.segments, from_seq) if from_seq > 1 else 0
        self.problem: tuple[int, int, str] | None = None
        self.last_seq = 0
        self.scanned = 0
        self.visited = 0

    def scans(self) -> Iterator[tuple[Path, SegmentScan]]:
        """Yield ``(path, scan)`` per segment; iterate ``scan.records()`` before moving on."""
        segments = self.segments
        prev_last: int | None = None
        for pos in range(self.start, len(segments)):
            _index, path = segments[pos]
            try:
                header, view = _mapped(path)
            except JournalCorruptError as exc:
                self.problem = (pos, 0, str(exc))
                return
            if prev_last is not None and header.base_seq <= prev_last:
                self.problem = (pos, 0, f"{path}: offset 32: base seq {header.base_seq} "
                                        f"is not above the previous segment's {prev_last}")
                return
            if prev_last is not None and header.index != segments[pos - 1][0] + 1:
                self.problem = (pos, 0, f"{path}: segment index {header.index} does not "
                                        f"follow {segments[pos - 1][0]}")
                return
            scan = SegmentScan(view, header.base_seq - 1)
            self.visited += 1
            yield path, scan
            self.scanned += scan.count
            self.last_seq = max(self.last_seq, scan.last_seq)
            if scan.error is not None:
                self.problem = (pos, scan.end, f"{path}: offset {scan.end}: {scan.error}")
                return
            if not scan.sealed:
                extent = scan_tail_extent(view, scan.end) if self.check_tail else scan.end
                if extent > scan.end:
                    self.problem = (pos, scan.end,
                                    f"{path}: offset {scan.end}: non-zero bytes after the "
                                    f"last valid record (up to offset {extent})")
                    return
                if pos + 1 < len(segments):
                    self.problem = (pos + 1, 0, f"{path}: offset {scan.end}: segment ends "
                                                f"without a seal but later segments follow")
                    return
            prev_last = scan.last_seq


def iter_records(directory: Path | str, from_seq: int = 0, *,
                 strict: bool = False) -> Iterator[Record]:
    """Every valid record with ``seq >= from_seq`` (seals excluded), in order. Stops at the
    first invalid record (a torn tail ends the valid prefix); with ``strict`` it raises
    :class:`JournalCorruptError` naming file and offset instead."""
    walk = _Walk(Path(directory), from_seq, check_tail=False)
    for path, scan in walk.scans():
        for off, seq, rtype, payload in scan.records():
            if seq >= from_seq:
                yield Record(seq, rtype, bytes(payload), path, off)
    if strict and walk.problem is not None:
        raise JournalCorruptError(walk.problem[2])


def iter_commands(directory: Path | str, from_seq: int = 0, *, to_seq: int | None = None,
                  strict: bool = False) -> Iterator[Command]:
    """Decode the commands with ``from_seq <= seq <= to_seq`` in order (the valid prefix; see
    :func:`iter_records` for ``strict``)."""
    walk = _Walk(Path(directory), from_seq, check_tail=False)
    decode = _decoder.decode
    stop = to_seq if to_seq is not None else 1 << 63
    for path, scan in walk.scans():
        for off, seq, rtype, payload in scan.records():
            if seq < from_seq or rtype != RECORD_COMMAND:
                continue
            if seq > stop:
                return
            yield _decode(decode, payload, path, off)
    if strict and walk.problem is not None:
        raise JournalCorruptError(walk.problem[2])


def _decode(decode: Callable[[memoryview], Command], payload: memoryview, path: Path,
            off: int) -> Command:
    try:
        return decode(payload)
    except msgspec.DecodeError as exc:  # CRC was fine: a writer bug or a foreign format
        raise JournalCorruptError(
            f"{path}: offset {off}: record passed its CRC but does not decode as a "
            f"command: {exc}") from None


def _engine_for(directory: Path, instruments: Iterable[Instrument] | None,
                config: EngineConfig | None) -> tuple[MatchingEngine, JournalMeta | None]:
    meta = read_meta(directory)
    if instruments is None:
        if meta is None:
            raise JournalError(f"{directory} has no journal.meta: pass the instruments")
        instruments = meta.instruments
    if config is None and meta is not None:
        config = meta.config
    return MatchingEngine(list(instruments), config), meta


class Follower(Protocol):
    """A component downstream of the engine whose state derives from the engine's events
    (e.g. the exchange's report numbering): recovery restores it with the engine and feeds
    it the replayed tail, so it ends exactly where it was. ``key`` names its state inside a
    snapshot's ``attachments``; a snapshot without it is not used (the replay starts
    earlier, from a snapshot that has it or from the beginning)."""

    @property
    def key(self) -> str:
        """The name of its state in a snapshot (a class attribute will do)."""

    def restore(self, state: bytes | None, orders: Iterable[Order]) -> None:
        """Start from ``state`` (None: from nothing) and the restored engine's live orders
        (resting and armed stops)."""

    def build(self, command_seq: int, ts: int, events: Sequence[Event]) -> Any:
        """Take one replayed command's events."""


@dataclass
class _Rebuild:
    engine: MatchingEngine
    report: RecoveryReport
    problem: tuple[int, int, str] | None = None
    problems: list[str] = field(default_factory=list)


def _rebuild(directory: Path, instruments: Iterable[Instrument] | None,
             config: EngineConfig | None, *, to_seq: int | None,
             use_snapshot: bool, check_tail: bool,
             followers: Sequence[Follower] = (),
             snapshot_filter: Callable[[EngineSnapshot], bool] | None = None) -> _Rebuild:
    t0 = time.perf_counter()
    instruments = list(instruments) if instruments is not None else None
    engine, _meta = _engine_for(directory, instruments, config)
    report = RecoveryReport()
    stop = to_seq if to_seq is not None else 1 << 63
    used: EngineSnapshot | None = None
    if use_snapshot:
        for seq, path in reversed(list_snapshots(directory)):
            if seq > stop:
                continue
            try:
                snap = read_snapshot(path)
                missing = [f.key for f in followers if f.key not in snap.attachments]
                if missing:
                    raise KeyError(f"{path.name} has no state for {', '.join(missing)}")
                if snapshot_filter is not None and not snapshot_filter(snap):
                    continue
                engine.restore(snap)
            except (JournalCorruptError, KeyError, RuntimeError) as exc:
                report.snapshots_rejected.append(str(exc))
                engine, _meta = _engine_for(directory, instruments, config)
                continue
            report.snapshot_path = str(path)
            report.snapshot_seq = snap.last_seq
            used = snap
            break
    after = report.snapshot_seq
    for f in followers:
        f.restore(used.attachments[f.key] if used is not None else None,
                  engine.orders.values())
    walk = _Walk(directory, after + 1, check_tail=check_tail)
    decode = _decoder.decode
    # Commands are applied in batches (MatchingEngine.process_many: its per-call cost once
    # per batch); followers see each command's events in order, as before.
    batch: list[Command] = []
    add = batch.append
    process_many = engine.process_many

    def flush() -> None:
        results = process_many(batch)
        if followers:
            for cmd, events in zip(batch, results, strict=True):
                for f in followers:
                    f.build(cmd.seq, cmd.ts, events)
        batch.clear()

    def process(cmd: Command) -> None:
        add(cmd)
        if len(batch) >= REPLAY_BATCH:
            flush()
    replayed = 0
    done = False
    for path, scan in walk.scans():
        try:
            done = scan.apply(after, stop, decode, process)
            replayed += scan.applied
        except JournalCorruptError as exc:
            raise JournalCorruptError(f"{path}: {exc}") from None
        finally:
            flush()  # what the scan applied before it stopped, even on a corrupt record
        if done:
            break
    report.segments = walk.visited
    report.records_scanned = walk.scanned
    report.records_replayed = replayed
    report.last_seq = max(engine.last_seq, report.snapshot_seq)
    report.seconds = time.perf_counter() - t0
    return _Rebuild(engine, report, None if done else walk.problem)


def recover(directory: Path | str, instruments: Iterable[Instrument] | None = None,
            config: EngineConfig | None = None, *, truncate: bool = True,
            lock: DirectoryLock | None = None,
            followers: Sequence[Follower] = ()) -> tuple[MatchingEngine, RecoveryReport]:
    """Rebuild the engine after a restart: the newest valid snapshot, then the journal after
    it. A torn or corrupt tail is detected by its CRC (or framing), truncated — its bytes and
    any later segments moved to ``quarantine/`` — and reported; with ``truncate=False`` it
    raises :class:`JournalCorruptError` instead. ``instruments``/``config`` default to those
    recorded in ``journal.meta``. ``followers`` are restored and fed alongside the engine
    (see :class:`Follower`).

    Truncating is writing: with ``truncate`` (and an existing directory) the writer lock is
    held while recovering — ``lock``, when the caller already holds it (the exchange does,
    from here to :meth:`Journal.open <tickline.journal.Journal.open>`), else taken and
    released here — so a running writer's tail is never cut (:class:`JournalLocked`).
    """
    directory = Path(directory)
    if truncate and lock is None and directory.is_dir():
        with DirectoryLock.acquire(directory) as own:
            return recover(directory, instruments, config, truncate=True, lock=own,
                           followers=followers)
    rebuilt = _rebuild(directory, instruments, config, to_seq=None, use_snapshot=True,
                       check_tail=True, followers=followers)
    report = rebuilt.report
    if rebuilt.problem is not None:
        pos, offset, reason = rebuilt.problem
        if not truncate:
            raise JournalCorruptError(reason)
        t0 = time.perf_counter()
        repair: TailRepair = cut_journal(directory, pos, offset, reason)
        report.truncated_bytes = repair.truncated_bytes
        report.truncated_file = repair.file
        report.truncated_offset = repair.offset
        report.truncation_reason = reason
        report.quarantined = list(repair.quarantined)
        report.seconds += time.perf_counter() - t0
    return rebuilt.engine, report


def replay(directory: Path | str, *, to_seq: int | None = None, use_snapshot: bool = True,
           instruments: Iterable[Instrument] | None = None,
           config: EngineConfig | None = None,
           followers: Sequence[Follower] = (),
           snapshot_filter: Callable[[EngineSnapshot], bool] | None = None,
           ) -> tuple[MatchingEngine, RecoveryReport]:
    """Rebuild the state as of ``to_seq`` (default: the end) without modifying the journal:
    from the newest snapshot at or before it (unless ``use_snapshot`` is false; and, given
    ``snapshot_filter``, the newest it accepts), then the records after it, fed to
    ``followers`` too (see :class:`Follower`). The report's ``truncation_reason`` names a
    problem that stopped the replay early (a torn tail not yet recovered), but nothing is
    truncated. Safe beside a running writer: it only reads."""
    rebuilt = _rebuild(Path(directory), instruments, config, to_seq=to_seq,
                       use_snapshot=use_snapshot, check_tail=False, followers=followers,
                       snapshot_filter=snapshot_filter)
    if rebuilt.problem is not None:
        rebuilt.report.truncation_reason = rebuilt.problem[2]
    return rebuilt.engine, rebuilt.report


def replay_events(directory: Path | str, *, to_seq: int | None = None
                  ) -> Iterator[tuple[Command, list[Event]]]:
    """Replay from the beginning (no snapshot), yielding each command with its events: the
    stream two replays are compared on. The engine comes from ``journal.meta``. A sharded
    data directory (``serve --shards``) is replayed merged (:mod:`tickline.shard.replay`)."""
    directory = Path(directory)
    from tickline.shard.replay import is_sharded, replay_merged  # no import cycle at load
    if is_sharded(directory):
        yield from replay_merged(directory)
        return
    engine, _meta = _engine_for(directory, None, None)
    process = engine.process
    for cmd in iter_commands(directory, to_seq=to_seq):
        yield cmd, process(cmd)


class Divergence(msgspec.Struct, kw_only=True):
    """The first point where two replays differ."""

    index: int
    """0-based position in the command stream."""
    seq: int
    reason: str
    left: str
    right: str


def compare_replays(left: Path | str, right: Path | str, *,
                    to_seq: int | None = None) -> tuple[Divergence | None, int, str, str]:
    """Replay two journals side by side, command by command and event by event. Returns the
    first divergence (``None`` if they agree), how many commands agreed, and both final
    engine digests."""
    left, right = Path(left), Path(right)
    ml, mr = read_meta(left), read_meta(right)
    if ml is not None and mr is not None and ml != mr:
        return (Divergence(index=0, seq=0, reason="journal.meta differs (instruments or config)",
                           left=repr(ml), right=repr(mr)), 0, "", "")
    engine_l, _ = _engine_for(left, None, None)
    engine_r, _ = _engine_for(right, None, None)
    enc = _event_encoder.encode
    it_l = iter_commands(left, to_seq=to_seq)
    it_r = iter_commands(right, to_seq=to_seq)
    index = 0
    sentinel = None
    while True:
        cl = next(it_l, sentinel)
        cr = next(it_r, sentinel)
        if cl is None and cr is None:
            break
        if cl is None or cr is None:
            which = "left" if cl is None else "right"
            present = cr if cl is None else cl
            assert present is not None
            div = Divergence(index=index, seq=present.seq,
                             reason=f"the {which} journal ends before seq {present.seq}",
                             left=repr(cl), right=repr(cr))
            return div, index, engine_l.digest(), engine_r.digest()
        if enc(cl) != enc(cr):
            div = Divergence(index=index, seq=cl.seq, reason="commands differ",
                             left=repr(cl), right=repr(cr))
            return div, index, engine_l.digest(), engine_r.digest()
        el = engine_l.process(cl)
        er = engine_r.process(cr)
        if enc(el) != enc(er):
            first = next((i for i, (a, b) in enumerate(zip(el, er, strict=False))
                          if enc(a) != enc(b)), min(len(el), len(er)))
            div = Divergence(
                index=index, seq=cl.seq,
                reason=f"events differ at event #{first} of seq {cl.seq}",
                left=repr(el[first] if first < len(el) else None),
                right=repr(er[first] if first < len(er) else None))
            return div, index, engine_l.digest(), engine_r.digest()
        index += 1
    dl, dr = engine_l.digest(), engine_r.digest()
    if dl != dr:
        return (Divergence(index=index, seq=engine_l.last_seq, reason="final digests differ",
                           left=dl, right=dr), index, dl, dr)
    return None, index, dl, dr


class VerifyReport(msgspec.Struct, kw_only=True):
    """Result of :func:`verify`: ``problems`` are corruption (each names file and offset),
    ``warnings`` are leftovers an operator may want to look at."""

    problems: list[str] = msgspec.field(default_factory=list)
    warnings: list[str] = msgspec.field(default_factory=list)
    segments: int = 0
    records: int = 0
    last_seq: int = 0
    snapshots: int = 0

    @property
    def ok(self) -> bool:
        """No corruption found."""
        return not self.problems


_LIVE_RETRIES = 20
"""How often :func:`verify` re-reads the last segment of a journal that a live writer is
appending to before it reports a problem at its tail (a record half-copied at that
instant); 5 ms apart: a commit's copy takes microseconds."""


def _verify_segment(path: Path, index: int, prev_last: int, later_segments: bool
                    ) -> tuple[list[str], int, int]:
    """Problems of one segment, its record count and its last seq (see :func:`verify`)."""
    problems: list[str] = []
    try:
        header, view = _mapped(path)
        if header.index != index:
            problems.append(f"{path}: offset 16: header index {header.index} "
                            f"does not match the file name")
        if header.base_seq <= prev_last:
            problems.append(f"{path}: offset 32: base seq {header.base_seq} is "
                            f"not above the previous segment's {prev_last}")
        scan = SegmentScan(view, header.base_seq - 1).run()
        if scan.error is not None:
            problems.append(f"{path}: offset {scan.end}: {scan.error}")
            return problems, scan.count, scan.last_seq
        extent = scan_tail_extent(view, scan.end)
        if extent > scan.end:
            problems.append(
                f"{path}: offset {scan.end}: non-zero bytes after the last valid "
                f"record{' (after the seal)' if scan.sealed else ''} "
                f"(up to offset {extent})")
        elif not scan.sealed and later_segments:
            problems.append(f"{path}: offset {scan.end}: segment ends without "
                            f"a seal but later segments follow")
        return problems, scan.count, scan.last_seq
    except JournalCorruptError as exc:
        problems.append(str(exc))
        return problems, 0, 0


def verify(directory: Path | str) -> VerifyReport:
    """Check every segment (header, every record's frame and CRC, sequence order, seals, the
    zeroed tail), every snapshot (header, CRC, decoding) and ``journal.meta``. Unlike replay,
    it continues past a bad segment to the next one, so one run lists every damaged file.

    Read-only and lock-free, so it runs beside a live writer: then (a warning says so) it
    checks the records committed when it reads them, and a problem at the tail of the last
    segment is re-read a few times before it is reported, as it may be a commit in flight.
    """
    directory = Path(directory)
    report = VerifyReport()
    if not directory.is_dir():
        report.problems.append(f"{directory}: not a directory")
        return report
    try:
        if read_meta(directory) is None:
            report.warnings.append(f"{directory}: no journal.meta (replay needs instruments)")
    except JournalCorruptError as exc:
        report.problems.append(str(exc))
    writer = writer_alive(directory)
    if writer is not None:
        report.warnings.append(f"{directory}: being written by pid {writer}; verified "
                               f"what was committed when read")
    segments = list_segments(directory)
    prev_last = 0
    prev_index: int | None = None
    for pos, (index, path) in enumerate(segments):
        report.segments += 1
        if prev_index is not None and index != prev_index + 1:
            report.problems.append(f"{path}: segment index {index} does not follow "
                                   f"{prev_index} (a segment is missing)")
        prev_index = index
        later = pos + 1 < len(segments)
        problems, count, last = _verify_segment(path, index, prev_last, later)
        retries = _LIVE_RETRIES if writer is not None and not later else 0
        while problems and retries:
            time.sleep(0.005)
            retries -= 1
            problems, count, last = _verify_segment(path, index, prev_last, later)
        report.problems.extend(problems)
        report.records += count
        prev_last = max(prev_last, last)
    report.last_seq = prev_last
    for _seq, path in list_snapshots(directory):
        report.snapshots += 1
        try:
            read_snapshot(path)
        except FileNotFoundError:  # pruned by a live writer since it was listed
            report.snapshots -= 1
        except JournalCorruptError as exc:
            report.problems.append(str(exc))
    for name in sorted(os.listdir(directory)):
        if name.endswith(".tmp"):
            report.warnings.append(f"{directory / name}: leftover temporary file (ignored)")
    if (directory / QUARANTINE).is_dir():
        report.warnings.append(f"{directory / QUARANTINE}: holds bytes cut off by a recovery")
    return report


__all__ = ["Divergence", "Follower", "Record", "RecoveryReport", "VerifyReport", "compare_replays",
           "iter_commands", "iter_records", "recover", "replay", "replay_events", "verify"]
