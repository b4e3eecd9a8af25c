"""``tickline bench journal``: append, replay and recovery throughput of the journal.

What is measured, each phase timed on its own (all in one run, so ratios are comparable on
a shared, noisy machine):

1. **appends** of the exchange-core mix (prefill + commands, generated before timing), in
   batches of ``batch`` records per :meth:`~tickline.journal.Journal.commit`, once per
   durability policy (``none``, ``interval`` 5 ms, ``batch``), plus the single-call
   ``append_command`` loop with ``none``: appends/s and MB/s;
2. **the exchange loop** into ``--keep DIR``: append a batch, commit (durability ``batch``),
   then apply it to the matching engine; a snapshot half way. This is the journal left for
   ``tickline replay``;
3. **replay** of that journal: records *read* (frame + CRC32C checked) per second, records
   read and *decoded* to commands per second (``replay_records_per_second``), and commands
   *replayed into the engine* per second (decode + ``MatchingEngine.process``), checking
   that the replayed digest equals the live one;
4. **recovery** of a journal of ``--recovery-records`` records written by the exchange loop
   with a snapshot every tenth of it (the newest one a tenth before the end): the time of
   :func:`~tickline.journal.recover`, and, with ``--full-recovery``, of replaying every
   record with no snapshot. Files are read from a warm page cache.

The workload generator runs the matching engine to produce valid cancels and moves, so
generating 10M commands takes about as long as matching them; it is not timed.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tickline.bench.workload import exchange_core_mix
from tickline.journal import Journal, recover, replay
from tickline.journal.format import list_segments
from tickline.journal.recovery import _Walk
from tickline.journal.snapshot import META_NAME, list_snapshots
from tickline.matching import Command, EngineConfig, Instrument

BYTES_PER_RECORD_ESTIMATE = 60
_JOURNAL_ARTEFACTS = ("segment-", "snapshot-", ".segment-", ".snapshot-", META_NAME,
                      "quarantine", ".journal.meta")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _generate(console: Console, commands: int, seed: int) -> tuple[list[Instrument],
                                                                  list[Command]]:
    with _progress(console) as bar:
        task = bar.add_task(f"generating {commands:,} exchange-core commands", total=commands)
        work = exchange_core_mix(commands, seed=seed,
                                 progress=lambda n: bar.update(task, completed=n))
        bar.update(task, completed=commands)
    cmds = [*work.prefill, *work.commands]
    last = 0
    for cmd in cmds:  # the generator sequences them; the journal insists
        if cmd.seq <= last:
            raise RuntimeError(f"workload is not sequenced: seq {cmd.seq} after {last}")
        last = cmd.seq
    return work.instruments, cmds


def _batches(cmds: Sequence[Command], size: int) -> list[Sequence[Command]]:
    return [cmds[i:i + size] for i in range(0, len(cmds), size)]


@contextmanager
def _scratch(base: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tickline-bench-journal-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _bench_appends(base: Path, batches: list[Sequence[Command]], durability: str,
                   single_call: bool = False) -> dict[str, float]:
    with _scratch(base) as d:
        j = Journal.open(d, durability=durability)
        n = 0
        t0 = time.perf_counter()
        if single_call:
            append, commit = j.append_command, j.commit
            for batch in batches:
                for cmd in batch:
                    append(cmd)
                commit()
                n += len(batch)
        else:
            append_many, commit = j.append_many, j.commit
            for batch in batches:
                n += append_many(batch)
                commit()
        dt = time.perf_counter() - t0
        stats = j.statistics()
        j.close()
    nbytes = int(stats["bytes_committed"])
    return {"records": n, "seconds": dt, "per_second": n / dt, "mb_per_second": nbytes / dt / 1e6,
            "bytes": nbytes, "syncs": int(stats["syncs"])}


def _clear_journal_dir(path: Path) -> None:
    """Empty a previous run's journal in ``path``; refuse if it holds anything else."""
    if not path.exists():
        path.mkdir(parents=True)
        return
    names = os.listdir(path)
    foreign = [n for n in names if not n.startswith(_JOURNAL_ARTEFACTS)]
    if foreign:
        raise SystemExit(f"--keep {path}: directory holds non-journal files {foreign[:3]}; "
                         f"choose an empty or journal-only directory")
    for name in names:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()


def _exchange_loop(directory: Path, instruments: list[Instrument],
                   batches: list[Sequence[Command]], *, durability: str,
                   snapshot_every: int, snapshot_before: int,
                   tick: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the commands through the real exchange loop (:class:`tickline.exchange.Exchange`:
    sequence, match, journal + commit, publish), one batch at a time; snapshot every
    ``snapshot_every`` commands while fewer than ``snapshot_before`` are done. The journal it
    leaves is exactly what ``tickline serve`` would have written."""
    from tickline.exchange import Exchange

    exchange = Exchange(instruments, engine_config=EngineConfig(), journal_dir=directory,
                        durability=durability, max_batch=max(len(b) for b in batches))
    submit = exchange.submit
    replace = msgspec.structs.replace
    done = 0
    next_snap = snapshot_every
    snap_seconds = 0.0
    t0 = time.perf_counter()
    for batch in batches:
        for cmd in batch:
            submit(replace(cmd))  # the sequencer stamps its own seq/ts on a fresh copy
        exchange.pump()
        done += len(batch)
        if done >= next_snap and done < snapshot_before:
            ts = time.perf_counter()
            exchange.snapshot()
            snap_seconds += time.perf_counter() - ts
            next_snap += snapshot_every
        if tick is not None:
            tick(done)
    dt = time.perf_counter() - t0
    digest, last = exchange.engine.digest(), exchange.engine.last_seq
    exchange.close()
    return {"records": done, "seconds": dt, "per_second": done / dt,
            "snapshot_seconds": snap_seconds, "digest": digest, "last_sequence": last}


def _scan_rate(directory: Path) -> tuple[int, float]:
    """Read every record (frame and CRC check), decode nothing."""
    t0 = time.perf_counter()
    walk = _Walk(directory, check_tail=False)
    n = 0
    for _path, scan in walk.scans():
        n += scan.run().count
    return n, time.perf_counter() - t0


def _decode_rate(directory: Path) -> tuple[int, float]:
    """Read and decode every record (the replay fast path, ``SegmentScan.apply``) into a
    sink that keeps nothing: the journal's share of a replay, without the engine."""
    t0 = time.perf_counter()
    walk = _Walk(directory, check_tail=False)
    sink: Callable[[Any], None] = deque(maxlen=0).append
    decode = msgspec.msgpack.Decoder(Command).decode
    n = 0
    for _path, scan in walk.scans():
        scan.apply(0, 1 << 62, decode, sink)
        n += scan.applied
    return n, time.perf_counter() - t0


def run(*, records: int = 1_000_000, keep: Path | None = None, json_path: Path | None = None,
        recovery_records: int = 10_000_000, batch: int = 500, seed: int = 1,
        full_recovery: bool = True, console: Console | None = None) -> dict[str, Any]:
    """Run every phase, print a table, write ``json_path``; returns the results."""
    console = console or Console()
    base = Path(tempfile.gettempdir()) if keep is None else keep.resolve().parent
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "benchmark": "journal", "records": records, "batch": batch, "seed": seed,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }
    free = shutil.disk_usage(base).free
    need = max(records, recovery_records) * BYTES_PER_RECORD_ESTIMATE * 2 + (256 << 20)
    if need > free:
        fits = max(0, (free - (256 << 20)) // (BYTES_PER_RECORD_ESTIMATE * 2))
        console.print(f"[yellow]only {free >> 20} MiB free in {base}: recovery journal "
                      f"reduced to {fits:,} records[/yellow]")
        recovery_records = min(recovery_records, fits)

    instruments, cmds = _generate(console, records, seed)
    batches = _batches(cmds, batch)
    total = len(cmds)
    results["records_with_prefill"] = total

    # 1. appends per durability policy ----------------------------------------------------
    appends: dict[str, dict[str, float]] = {}
    with console.status("appends: durability none / interval / batch ..."):
        appends["none"] = _bench_appends(base, batches, "none")
        appends["none_single_call"] = _bench_appends(base, batches, "none", single_call=True)
        appends["interval"] = _bench_appends(base, batches, "interval")
        appends["batch"] = _bench_appends(base, batches, "batch")
    results["appends"] = appends
    results["appends_per_second"] = appends["none"]["per_second"]
    results["appends_per_second_single_call"] = appends["none_single_call"]["per_second"]
    results["appends_per_second_interval"] = appends["interval"]["per_second"]
    results["appends_per_second_batch"] = appends["batch"]["per_second"]
    results["append_mb_per_second"] = appends["none"]["mb_per_second"]
    results["append_mb_per_second_batch"] = appends["batch"]["mb_per_second"]
    results["bytes_per_record"] = appends["none"]["bytes"] / total

    # 2. the exchange loop, kept for tickline replay -------------------------------------
    loop_dir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="tickline-journal-",
                                                                    dir=base))
    _clear_journal_dir(loop_dir)
    with _progress(console) as bar:
        task = bar.add_task("exchange loop: journal (batch) + engine", total=total)
        loop = _exchange_loop(loop_dir, instruments, batches, durability="batch",
                              snapshot_every=max(1, total // 2), snapshot_before=total,
                              tick=lambda n: bar.update(task, completed=n))
    results["exchange_loop"] = loop
    results["exchange_loop_commands_per_second"] = loop["per_second"]
    results["last_sequence"] = loop["last_sequence"]
    results["digest"] = loop["digest"]
    results["journal_dir"] = str(loop_dir) if keep is not None else None

    # 3. replay --------------------------------------------------------------------------
    with console.status("replay: read / decode / engine ..."):
        n_scan, t_scan = min((_scan_rate(loop_dir) for _ in range(2)), key=lambda r: r[1])
        n_dec, t_dec = min((_decode_rate(loop_dir) for _ in range(2)), key=lambda r: r[1])
        engine, rep = replay(loop_dir, use_snapshot=False)
    results["replay_read_records_per_second"] = n_scan / t_scan
    results["replay_records_per_second"] = n_dec / t_dec
    results["replay_engine_commands_per_second"] = rep.records_replayed / rep.seconds
    results["replay_digest_matches"] = engine.digest() == loop["digest"]
    if not results["replay_digest_matches"]:
        console.print("[red]replayed digest differs from the live engine's![/red]")
    if keep is None:
        shutil.rmtree(loop_dir, ignore_errors=True)
    del engine

    # 4. recovery ------------------------------------------------------------------------
    if recovery_records > 0:
        results.update(_bench_recovery(console, base, recovery_records, batch, seed, records,
                                       instruments, cmds, full_recovery))
    _print(console, results)
    if json_path is not None:
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")
        console.print(f"wrote {json_path}")
    return results


def _bench_recovery(console: Console, base: Path, n: int, batch: int, seed: int,
                    records: int, instruments: list[Instrument], cmds: list[Command],
                    full_recovery: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"recovery_records": n}
    if n != records:
        instruments, cmds = _generate(console, n, seed)
    total = len(cmds)
    batches = _batches(cmds, batch)
    with _scratch(base) as d:
        with _progress(console) as bar:
            task = bar.add_task(f"recovery journal: {total:,} records, snapshot every "
                                f"{total // 10:,}", total=total)
            loop = _exchange_loop(d, instruments, batches, durability="none",
                                  snapshot_every=max(1, total // 10),
                                  snapshot_before=total - total // 20,
                                  tick=lambda k: bar.update(task, completed=k))
        del batches, cmds
        out["recovery_journal_bytes"] = sum(p.stat().st_size for _i, p in list_segments(d))
        snaps = list_snapshots(d)
        with console.status(f"recover(): newest snapshot + tail of {total:,} records ..."):
            engine, report = recover(d, instruments)
        out["recovery_seconds"] = report.seconds
        out["recovery_snapshot_seq"] = report.snapshot_seq
        out["recovery_records_replayed"] = report.records_replayed
        out["recovery_records_scanned"] = report.records_scanned
        out["recovery_digest_matches"] = engine.digest() == loop["digest"]
        out["recovery_snapshots"] = len(snaps)
        del engine
        t0 = time.perf_counter()
        n_scan, t_scan = _scan_rate(d)
        out["recovery_verify_scan_seconds"] = t_scan
        del t0, n_scan
        if full_recovery:
            with _progress(console) as bar:
                task = bar.add_task("full replay, no snapshot", total=None)
                engine, rep = replay(d, use_snapshot=False)
                bar.update(task, completed=rep.records_replayed, total=rep.records_replayed)
            out["recovery_full_replay_seconds"] = rep.seconds
            out["recovery_full_replay_digest_matches"] = engine.digest() == loop["digest"]
    return out


def _print(console: Console, r: dict[str, Any]) -> None:
    table = Table(title=f"journal benchmark: {r['records_with_prefill']:,} records, batches "
                        f"of {r['batch']}", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    a = r["appends"]
    for key, label in (("none", "append_many, durability none"),
                       ("none_single_call", "append_command loop, durability none"),
                       ("interval", "append_many, durability interval 5 ms"),
                       ("batch", "append_many, durability batch (msync per commit)")):
        table.add_row(label, f"{a[key]['per_second']:,.0f} rec/s  "
                             f"{a[key]['mb_per_second']:.1f} MB/s")
    table.add_row("bytes per record (frame + payload)", f"{r['bytes_per_record']:.1f}")
    table.add_row("exchange loop (journal batch + engine)",
                  f"{r['exchange_loop_commands_per_second']:,.0f} cmd/s")
    table.add_row("replay: records read (frame + CRC)",
                  f"{r['replay_read_records_per_second']:,.0f} rec/s")
    table.add_row("replay: records read + decoded",
                  f"{r['replay_records_per_second']:,.0f} rec/s")
    table.add_row("replay: commands into the engine",
                  f"{r['replay_engine_commands_per_second']:,.0f} cmd/s")
    table.add_row("replayed digest == live digest", str(r["replay_digest_matches"]))
    if "recovery_seconds" in r:
        table.add_row(f"recover(): {r['recovery_records']:,} records, snapshot at "
                      f"{r['recovery_snapshot_seq']:,}",
                      f"{r['recovery_seconds']:.2f} s ({r['recovery_records_replayed']:,} "
                      f"replayed)")
        table.add_row("recovery: verify scan of every record",
                      f"{r['recovery_verify_scan_seconds']:.2f} s")
        if "recovery_full_replay_seconds" in r:
            table.add_row("recovery with no snapshot (full replay)",
                          f"{r['recovery_full_replay_seconds']:.2f} s")
        table.add_row("recovered digest == live digest", str(r["recovery_digest_matches"]))
    console.print(table)
