"""``tickline bench shards``: exchange-core-mix commands over the shared-memory rings to 1, then
2 (...) shard processes — the ``serve --shards`` engine path without the network.

Each shard process is the real one (:func:`tickline.shard.worker.shard_main`: decode a frame
of commands, match, encode the events, send them back), without a journal. Every shard gets
its own exchange-core-mix stream over its own symbols (``--symbols-per-shard``, so symbols
are spread evenly), generated before timing and **pre-encoded into ring frames**: the feeder
(this process, one for all shards) only copies bytes into each inbound ring as room appears
and counts the answers coming back (decoding only their outer list), so it creates no
per-command Python objects. Each shard first gets its prefill (not timed), then the timed
stream; ``commands_per_second`` is all shards' timed commands over the wall time from the
first frame written to the last answer read.

Runs are interleaved (1, 2, 1, 2, ...) and each shard count's median is reported, with the
feeder's CPU share (``feeder_busy``: its process CPU time over the wall time) — with 2 cores
and 2 shards the feeder competes with the shards for a core.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

import msgspec

from tickline.bench.report import console, machine, write_json
from tickline.bench.workload import Workload, exchange_core_mix
from tickline.core.shm_ring import BackoffWait, SpscShmRing
from tickline.matching import Command, EngineConfig
from tickline.shard.channel import SLOT, pad
from tickline.shard.protocol import encode
from tickline.shard.worker import ShardSpec, shard_main

__all__ = ["run", "run_once"]

_RING_SLOTS = 1 << 15
_IDLE_SLEEP = 0.0002  # seconds: the feeder's pause when a pass moved nothing


class _DoneCount(msgspec.Struct, tag="done"):
    """A :class:`~tickline.shard.protocol.Done` with its results left undecoded."""

    results: list[msgspec.Raw]
    next_expiry: int | None


class _HelloLite(msgspec.Struct, tag="hello"):
    shard: int


class _StateLite(msgspec.Struct, tag="state"):
    digest: str


_decode = msgspec.msgpack.Decoder(_DoneCount | _HelloLite | _StateLite).decode


def _frames(cmds: list[Command], batch: int) -> bytes:
    """``cmds`` pre-encoded: one ring frame per ``batch`` commands, back to back."""
    return b"".join(pad(encode(cmds[i:i + batch])) for i in range(0, len(cmds), batch))


class _Shard:
    def __init__(self, index: int, work: Workload) -> None:
        self.index = index
        self.work = work
        self.inbound = SpscShmRing.create(capacity=_RING_SLOTS, slot_size=SLOT,
                                          wait=BackoffWait())
        self.outbound = SpscShmRing.create(capacity=_RING_SLOTS, slot_size=SLOT,
                                           wait=BackoffWait())
        spec = ShardSpec(0, 1, None, work.instruments, EngineConfig(), "none", 5, 0, 0,
                         self.inbound.name, self.outbound.name)
        self.proc = mp.get_context("spawn").Process(target=shard_main, args=(spec,),
                                                    daemon=True)
        self.buf = bytearray()
        self.answered = 0
        self.digest: str | None = None

    def drain(self) -> int:
        """Read what came back; count the answered commands (outer decode only)."""
        data = self.outbound.read_packed(_RING_SLOTS)
        if not data:
            return 0
        buf = self.buf
        buf += data
        pos = 0
        got = 0
        end = len(buf)
        with memoryview(buf) as view:
            while end - pos >= 4:
                n = int.from_bytes(view[pos:pos + 4], "little")
                total = n + 4 + (-(n + 4) % SLOT)
                if end - pos < total:
                    break
                msg = _decode(bytes(view[pos + 4:pos + 4 + n]))  # Raw keeps its input
                if type(msg) is _DoneCount:
                    got += len(msg.results)
                elif type(msg) is _StateLite:
                    self.digest = msg.digest
                else:
                    got -= 1 << 40  # a Hello: marks the process ready (see run_once)
                pos += total
        del buf[:pos]
        self.answered += got
        return got

    def close(self) -> None:
        self.inbound.close_writer()
        self.proc.join(30)
        for ring in (self.inbound, self.outbound):
            ring.close()
            ring.unlink()


def _feed(shards: list[_Shard], streams: list[bytes], counts: list[int]) -> tuple[float, float]:
    """Write every shard's pre-encoded stream as room appears, until every command is
    answered. Returns (wall seconds, feeder CPU seconds)."""
    offsets = [0] * len(shards)
    targets = [s.answered + c for s, c in zip(shards, counts, strict=True)]
    views = [memoryview(b) for b in streams]
    t0 = time.perf_counter()
    c0 = time.process_time()
    pending = len(shards)
    sleep = time.sleep
    while pending:
        pending = 0
        moved = False
        for i, shard in enumerate(shards):
            off = offsets[i]
            view = views[i]
            if off < len(view):
                chunk = view[off:off + (_RING_SLOTS // 2) * SLOT]
                k = shard.inbound.write_packed(chunk)
                if k:
                    offsets[i] = off + k * SLOT
                    moved = True
            if shard.drain():
                moved = True
            if shard.answered < targets[i]:
                pending += 1
        if not moved and pending:
            # nothing to write (rings full) and nothing back yet: give the core to the
            # shards instead of spinning on it (2 cores, N shards + this feeder)
            sleep(_IDLE_SLEEP)
    return time.perf_counter() - t0, time.process_time() - c0


def run_once(workloads: list[Workload], batch: int, *, verify: bool = False
             ) -> dict[str, float]:
    """One timed run over ``len(workloads)`` shard processes. ``verify``: afterwards, check
    each shard engine's state digest against the workload replayed on a local engine."""
    shards = [_Shard(k, w) for k, w in enumerate(workloads)]
    try:
        for s in shards:
            s.proc.start()
        for s in shards:  # wait for each Hello
            deadline = time.monotonic() + 60
            while s.answered >= 0:
                s.drain()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bench shard {s.index} did not start")
                time.sleep(0.005)
            s.answered = 0
        prefill = [_frames(w.prefill, batch) for w in workloads]
        _feed(shards, prefill, [len(w.prefill) for w in workloads])
        streams = [_frames(w.commands, batch) for w in workloads]
        counts = [len(w.commands) for w in workloads]
        wall, cpu = _feed(shards, streams, counts)
        if verify:
            for s, w in zip(shards, workloads, strict=True):
                s.inbound.put_packed(pad(encode([])))  # a state request
                deadline = time.monotonic() + 30
                while s.digest is None and time.monotonic() < deadline:
                    s.drain()
                    time.sleep(0.001)
                local = w.engine()
                for cmd in (*w.prefill, *w.commands):
                    local.process(cmd)
                if s.digest != local.digest():
                    raise AssertionError(f"bench shard {s.index}: state differs from a local "
                                         f"replay of its commands")
    finally:
        for s in shards:
            s.close()
    total = sum(counts)
    return {"commands": total, "seconds": wall, "commands_per_second": total / wall,
            "feeder_busy": cpu / wall}


def run(*, shard_counts: list[int], commands: int, symbols_per_shard: int, runs: int,
        batch: int, json_path: Path | None) -> dict[str, Any]:
    """Interleaved runs per shard count; print and write the medians."""
    top = max(shard_counts)
    console.print(f"generating {top} x {commands:,} exchange-core-mix commands ...")
    workloads = [exchange_core_mix(commands, seed=1 + k, symbols=symbols_per_shard)
                 for k in range(top)]
    samples: dict[int, list[dict[str, float]]] = {n: [] for n in shard_counts}
    for r in range(runs):
        for n in shard_counts:
            res = run_once(workloads[:n], batch)
            samples[n].append(res)
            console.print(f"run {r + 1}/{runs}: {n} shard(s) {res['commands_per_second']:,.0f}"
                          f" commands/s (feeder busy {res['feeder_busy']:.0%})")
    cps = {str(n): statistics.median(s["commands_per_second"] for s in samples[n])
           for n in shard_counts}
    result: dict[str, Any] = {
        "benchmark": "shards",
        "commands_per_shard": commands,
        "symbols_per_shard": symbols_per_shard,
        "batch": batch,
        "runs": runs,
        "commands_per_second": cps,
        "feeder_busy": {str(n): statistics.median(s["feeder_busy"] for s in samples[n])
                        for n in shard_counts},
        "samples": {str(n): [s["commands_per_second"] for s in samples[n]]
                    for n in shard_counts},
        "machine": machine(),
    }
    base = str(min(shard_counts))
    if len(shard_counts) > 1:
        result["scaling"] = {k: v / cps[base] for k, v in cps.items()}
    console.print(f"commands/s (median of {runs}): " + ", ".join(
        f"{k} shard(s) {v:,.0f}" for k, v in cps.items()))
    write_json(json_path, result)
    return result
