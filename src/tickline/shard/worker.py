"""One shard's engine process: recover from ``<data_dir>/shard-K``, then match, journal and
answer the batches the gateway sends over its shared-memory ring.

Per group of frames taken from the ring: every command is matched, the whole group is
appended to the shard's journal and committed (durability policy), and only then the events
go back (:class:`~tickline.shard.protocol.Done`). A shard that dies loses only what it had
not committed, which nobody was told about. On start it recovers (snapshot + journal, a torn
tail truncated) and returns the events of the commands it journaled after ``acked_seq`` (the
last one the gateway released) so the gateway can finish those in order
(:class:`~tickline.shard.protocol.Hello`).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from tickline.core.shm_ring import BackoffWait, SpscShmRing
from tickline.journal import DirectoryLock, Journal, recovery
from tickline.matching import Command, EngineConfig, Event, Instrument, MatchingEngine
from tickline.shard.channel import FrameReader, FrameWriter
from tickline.shard.engine import engine_for_shard
from tickline.shard.protocol import Done, Hello, State, decode_commands, encode

__all__ = ["ShardSpec", "shard_main"]


class ShardSpec:
    """What a shard process needs (pickled to the spawned child)."""

    def __init__(self, shard: int, shards: int, directory: str | None,
                 instruments: list[Instrument], config: EngineConfig, durability: str,
                 interval_ms: int, snapshot_every: int, acked_seq: int,
                 in_ring: str, out_ring: str, discard_unreleased: bool = False) -> None:
        self.shard = shard
        self.shards = shards
        self.directory = directory
        self.instruments = instruments
        self.config = config
        self.durability = durability
        self.interval_ms = interval_ms
        self.snapshot_every = snapshot_every
        self.acked_seq = acked_seq
        self.in_ring = in_ring
        self.out_ring = out_ring
        self.discard_unreleased = discard_unreleased
        """Cut the journal after ``acked_seq`` instead of returning those commands' events:
        the gateway already answered them ``SHARD_UNAVAILABLE`` (a restart that follows a
        failed in-batch restart), so they must not take effect."""


def _recover(spec: ShardSpec, lock: DirectoryLock) -> tuple[MatchingEngine, list[
        tuple[int, list]], int]:  # type: ignore[type-arg]
    """Recover the shard's engine; return it, the late results and records replayed."""
    def factory(instruments: list[Instrument], config: EngineConfig | None = None
                ) -> MatchingEngine:
        return engine_for_shard(instruments, config, spec.shard, spec.shards)

    # This process runs one shard only: every engine recovery builds here must number its
    # orders like this shard, so the journal module's engine class is this shard's.
    setattr(recovery, "MatchingEngine", factory)  # noqa: B010
    assert spec.directory is not None
    directory = Path(spec.directory)
    engine, report = recovery.recover(directory, spec.instruments, spec.config, lock=lock)
    late: list[tuple[int, list]] = []  # type: ignore[type-arg]
    if engine.last_seq > spec.acked_seq and spec.discard_unreleased:
        _cut_after(directory, spec.acked_seq)
        engine, report = recovery.recover(directory, spec.instruments, spec.config, lock=lock)
    elif engine.last_seq > spec.acked_seq:
        # journaled but never released: rebuild up to the acknowledged point, then redo the
        # rest to get its events back for the gateway
        engine, _ = recovery.replay(directory, to_seq=spec.acked_seq,
                                    instruments=spec.instruments, config=spec.config)
        late.extend((cmd.seq, engine.process(cmd))
                    for cmd in recovery.iter_commands(directory, from_seq=spec.acked_seq + 1))
    return engine, late, report.records_replayed


def _cut_after(directory: Path, seq: int) -> None:
    """Cut the journal at its first record after ``seq`` (the bytes go to ``quarantine/``,
    as for a torn tail); a snapshot beyond ``seq`` is moved there too."""
    from tickline.journal.format import SegmentScan, list_segments
    from tickline.journal.snapshot import list_snapshots
    from tickline.journal.writer import cut_journal

    for pos, (_index, path) in enumerate(list_segments(directory)):
        _header, view = recovery._mapped(path)  # the reader's own mapping
        for off, rec_seq, _type, _payload in SegmentScan(view, 0).records():
            if rec_seq > seq:
                cut_journal(directory, pos, off, f"unreleased after seq {seq} (answered 411)")
                break
        else:
            continue
        break
    for snap_seq, snap in list_snapshots(directory):
        if snap_seq > seq:
            target = directory / "quarantine" / snap.name
            target.parent.mkdir(exist_ok=True)
            snap.replace(target)


def _run(cmds: list[Command], process: Callable[[Command], list[Event]],
         journal: Journal | None, writer: FrameWriter, engine: MatchingEngine) -> int:
    """Match ``cmds``, journal and commit them, then send their events back."""
    results = [(cmd.seq, process(cmd)) for cmd in cmds]
    if journal is not None:
        journal.append_many(cmds)
        journal.commit()
    writer.send(encode(Done(results, engine.next_expiry)))
    return len(cmds) if journal is not None else 0


def shard_main(spec: ShardSpec) -> None:
    """The shard process's entry point (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway stops us (end of stream)
    inbound = SpscShmRing.attach(spec.in_ring, wait=BackoffWait())
    outbound = SpscShmRing.attach(spec.out_ring, wait=BackoffWait())
    reader = FrameReader(inbound)
    writer = FrameWriter(outbound)
    journal: Journal | None = None
    late: list[tuple[int, list]] = []  # type: ignore[type-arg]
    replayed = 0
    if spec.directory is not None:
        directory = Path(spec.directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = DirectoryLock.acquire(directory)
        engine, late, replayed = _recover(spec, lock)
        journal = Journal.open(directory, durability=spec.durability,
                               interval_ms=spec.interval_ms, instruments=spec.instruments,
                               config=spec.config, lock=lock)
    else:
        engine = engine_for_shard(spec.instruments, spec.config, spec.shard, spec.shards)
    writer.send(encode(Hello(spec.shard, os.getpid(), engine.last_seq, engine.next_expiry,
                             late, replayed)))
    process = engine.process
    since_snapshot = 0
    parent = os.getppid()
    try:
        while True:
            frames = reader.poll(0.5)
            if not frames:
                if inbound.writer_closed and len(inbound) == 0:
                    break
                if os.getppid() != parent:  # the gateway died (SIGKILL): nobody to answer
                    break
                if journal is not None and journal.unsynced:
                    journal.sync()
                continue
            cmds: list[Command] = []
            for frame in frames:
                batch = decode_commands(frame)
                if not batch:  # a state request, answered after what came before it
                    if cmds:
                        since_snapshot += _run(cmds, process, journal, writer, engine)
                        cmds = []
                    writer.send(encode(State(
                        spec.shard, engine.last_seq, engine.digest(),
                        {sym: book.digest() for sym, book in engine.books.items()},
                        engine.next_order_id, engine.next_trade_id)))
                cmds.extend(batch)
            if not cmds:
                continue
            since_snapshot += _run(cmds, process, journal, writer, engine)
            if journal is not None and spec.snapshot_every and \
                    since_snapshot >= spec.snapshot_every:
                since_snapshot = 0
                journal.write_snapshot(engine.snapshot())
    finally:
        if journal is not None:
            journal.close()
        with contextlib.suppress(Exception):
            outbound.close_writer()
        inbound.close()
        outbound.close()
