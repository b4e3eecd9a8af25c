"""``tickline bench exchange``: the whole in-process exchange loop, without the network.

The exchange-core mix goes through :class:`~tickline.exchange.Exchange` exactly as the
gateways drive it: ``submit_many`` of ``batch`` commands at a time with a reply callback
(as one socket read's frames), then ``pump()`` — SEQUENCE, MATCH, JOURNAL (a real journal
in a temporary directory, durability ``none`` or ``batch``), RELEASE (market data on the
bus, with a subscriber on every topic of the symbol that ``bus.pump()`` delivers to;
execution reports built, routed and handed to the reply). Commands/s is the wall time of
all of it; the per-stage time comes from the exchange's own stage recorders (match, journal,
publish+reports; one sample per batch), so the next bottleneck after matching is visible.
A plain engine loop on the same commands gives the matching-only rate for the ratio.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from tickline._build import describe as build_describe
from tickline.bench.matching import run_throughput
from tickline.bench.report import console, machine, progress, write_json
from tickline.bench.workload import Workload, exchange_core_mix
from tickline.exchange import Exchange
from tickline.matching import Command, Event
from tickline.stream.reports import ExecReport


def ticking_clock(start: int, step: int) -> Callable[[], int]:
    """A deterministic clock: ``start + step``, ``start + 2 * step``, ... one step per read
    (for instruction counts that do not depend on how fast the machine ran the loop)."""
    now = [start]

    def read() -> int:
        now[0] += step
        return now[0]

    return read


def run_loop(workload: Workload, durability: str, batch: int, directory: Path,
             advance: Any = None, *, deterministic: bool = False) -> dict[str, Any]:
    """One pass of the workload through a fresh exchange journaling into ``directory``.
    ``deterministic``: engine time and the stage clock tick by a fixed step per read
    instead of following the wall clock (so no deadline is missed because valgrind ran the
    loop 50x slower, and the same commands take the same code paths every run); the
    throughput figures are then meaningless."""
    clocks: dict[str, Any] = {}
    if deterministic:
        clocks = {"clock": ticking_clock(1_700_000_000 * 10**9, 1_000),
                  "monotonic": ticking_clock(0, 1_000)}
    exchange = Exchange(workload.instruments, journal_dir=directory, durability=durability,
                        max_batch=batch, capacity=max(65536, 2 * batch), **clocks)
    delivered = [0]
    received: list[int] = [0]

    def on_messages(_topic: str, msgs: Any) -> None:
        received[0] += len(msgs)

    bus = exchange.bus
    for inst in workload.instruments:
        bus.subscribe(f"*.{inst.symbol}", batch_callback=on_messages, capacity=1 << 20)

    def reply(_cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
        delivered[0] += len(reports)

    try:
        for cmd in workload.prefill:
            exchange.submit(cmd, reply)
        exchange.pump()
        bus.pump()
        received[0] = 0
        for rec in (exchange.stage_match, exchange.stage_journal, exchange.stage_publish):
            rec.snapshot()
        base = {name: rec.snapshot().total for name, rec in (
            ("match", exchange.stage_match), ("journal", exchange.stage_journal),
            ("publish", exchange.stage_publish))}
        commands = workload.commands
        clock = time.perf_counter_ns
        submit_many, pump, deliver = exchange.submit_many, exchange.pump, bus.pump
        t0 = clock()
        for start in range(0, len(commands), batch):
            chunk = commands[start:start + batch]
            submit_many(chunk, reply)
            pump()
            deliver()
            if advance is not None and start % (50 * batch) == 0:
                advance(min(50 * batch, len(commands) - start))
        elapsed = clock() - t0
        stages = {name: rec.snapshot().total - base[name] for name, rec in (
            ("match", exchange.stage_match), ("journal", exchange.stage_journal),
            ("publish", exchange.stage_publish))}
        events = exchange.events
    finally:
        exchange.close()
    n = len(workload.commands)
    return {
        "durability": durability, "batch": batch,
        "commands_per_second": round(n / (elapsed / 1e9)),
        "ns_per_command": round(elapsed / n),
        "stage_ns_per_command": {k: round(v / n) for k, v in stages.items()},
        "other_ns_per_command": round((elapsed - sum(stages.values())) / n),
        "events": events, "reports_to_submitters": delivered[0],
        "market_data_messages": received[0],
    }


def run(*, commands: int = 200_000, seed: int = 1, batch: int = 64,
        durabilities: tuple[str, ...] = ("none", "batch"),
        json_path: Path | None = None) -> dict[str, Any]:
    """Every durability over the same commands, plus the matching-only rate; print, write."""
    with progress() as bar:
        gen = bar.add_task("generate workload", total=commands)
        workload = exchange_core_mix(commands, seed,
                                     progress=lambda done: bar.update(gen, completed=done))
        bar.update(gen, completed=commands)
        loops = []
        for durability in durabilities:
            task = bar.add_task(f"exchange loop, durability {durability}", total=commands)
            with tempfile.TemporaryDirectory(prefix="tickline-bench-exchange-") as tmp:
                loops.append(run_loop(workload, durability, batch, Path(tmp),
                                      lambda k, t=task: bar.advance(t, k)))
        match_cps, _engine = run_throughput(workload)
    result: dict[str, Any] = {
        "benchmark": "exchange",
        "workload": {"name": "exchange-core mix", "commands": commands, "seed": seed,
                     "batch": batch},
        "engine_only_commands_per_second": round(match_cps),
        "loops": loops,
        "build": build_describe(),
        "machine": machine(),
    }
    for loop in loops:
        result[f"commands_per_second_{loop['durability']}"] = loop["commands_per_second"]
    _print(result)
    write_json(json_path, result)
    return result


def _print(r: dict[str, Any]) -> None:
    w = r["workload"]
    t = Table(title=f"tickline bench exchange — {w['name']}, {w['commands']:,} commands in "
                    f"batches of {w['batch']}, {r['build']}")
    for col in ("loop", "commands/s", "ns/command", "match", "journal",
                "publish + reports", "other (submit, ring)"):
        t.add_column(col, justify="right")
    for loop in r["loops"]:
        s = loop["stage_ns_per_command"]
        t.add_row(f"durability {loop['durability']}", f"{loop['commands_per_second']:,}",
                  f"{loop['ns_per_command']:,}", f"{s['match']:,}", f"{s['journal']:,}",
                  f"{s['publish']:,}", f"{loop['other_ns_per_command']:,}")
    engine = r["engine_only_commands_per_second"]
    t.add_row("engine alone (no loop)", f"{engine:,}", f"{round(1e9 / engine):,}", "", "", "", "")
    console.print(t)
