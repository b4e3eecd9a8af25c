"""``tickline bench matching``: the exchange-core mix through the matching engine.

What is timed, in four passes over the same pre-generated commands:

1. **throughput** — a fresh engine (books prefilled, untimed) processes every command in a
   plain loop; every event is produced (and dropped). ``commands_per_second``.
2. **latency** — another fresh engine, each ``process()`` call timed with a
   ``perf_counter_ns`` pair into a preallocated array, folded into an HDR histogram
   afterwards. The timer's own cost is measured and reported (it is *included* in every
   sample). Garbage-collector pauses during the pass are timed through ``gc.callbacks``.
3. **seed port** — the seed document's order book, ported straight
   (:mod:`tickline.bench.seed_port`), on the first ``seed_port_commands`` of the same stream.
4. **memory** — RSS growth of an engine holding ``memory_orders`` resting orders.

With ``risk=True`` (``--risk``) the throughput pass also runs, back to back in alternating
rounds, on an engine where *every* account has generous pre-trade limits
(:func:`generous_limits`: all four set, none ever reached, so the same events are produced
— checked on the final books and id counters), *paired*: an engine without and one with the
limits take turns on the same 5,000-command slices, so other load on the machine hits both
alike. ``risk.overhead_pct`` is the median over slices of the time ratio minus one.

``--mix`` (issue 11): the same generator with 5% stops and 5% icebergs on top
(:func:`~tickline.bench.workload.exchange_core_mix`), timed in alternating rounds with the
plain mix; ``--peers`` (issue 13): pure and compiled builds and liquibook on the same
commands (:mod:`tickline.bench.peers`); ``--scale`` (issue 13): throughput and p99.99 at
1,000 to 1,000,000 resting orders with prices over 10 and 100,000 ticks (:func:`run_scale`).
"""

from __future__ import annotations

import gc
import statistics
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.table import Table

from tickline._build import describe as build_describe
from tickline.bench.report import (
    console,
    current_rss_mb,
    histogram_of,
    latency_table,
    machine,
    peak_rss_mb,
    percentiles,
    progress,
    timer_overhead_ns,
    write_json,
)
from tickline.bench.seed_port import SeedPortRunner
from tickline.bench.workload import Workload, exchange_core_mix
from tickline.matching import (
    BUY,
    SELL,
    EngineConfig,
    Instrument,
    MatchingEngine,
    NewOrder,
    RiskLimits,
)

CHUNK = 50_000

SCALE_RESTING = (1_000, 10_000, 100_000, 1_000_000)
SCALE_TICKS = (10, 100_000)
"""``--scale``: resting-order sizes and price spreads (ticks) of the cells."""


class GcPauses:
    """Times every collection while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses_ns: list[int] = []
        self.by_generation = [0, 0, 0]
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.pauses_ns.append(time.perf_counter_ns() - self._start)
            self.by_generation[info["generation"]] += 1

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> dict[str, Any]:
        pauses = self.pauses_ns
        return {
            "collections": len(pauses),
            "by_generation": self.by_generation,
            "max_pause_us": max(pauses) / 1000 if pauses else 0.0,
            "total_pause_ms": sum(pauses) / 1e6,
        }


GENEROUS = RiskLimits(max_order_quantity=10**12, max_order_notional=10**18,
                      max_open_orders=10**9, max_position=10**15)
"""Limits no command of the mix comes near: every check runs, none rejects."""


def generous_limits(workload: Workload) -> EngineConfig:
    """The workload's engine config with :data:`GENEROUS` limits for every account that
    appears in it."""
    accounts = {int(getattr(cmd, "account", 0)) for cmd in workload.prefill}
    accounts |= {int(getattr(cmd, "account", 0)) for cmd in workload.commands}
    accounts.discard(0)
    return EngineConfig(account_limits=dict.fromkeys(sorted(accounts), GENEROUS))


def _prefilled(workload: Workload, config: EngineConfig | None = None) -> MatchingEngine:
    engine = (workload.engine() if config is None
              else MatchingEngine(workload.instruments, config))
    process = engine.process
    for cmd in workload.prefill:
        process(cmd)
    return engine


def timed_chunks(run: Any, items: list[Any], advance: Any = None) -> tuple[float, float]:
    """Items per wall-clock second and per CPU second of ``run(chunk)`` over ``items`` in
    chunks of :data:`CHUNK` (slicing and ``advance(len(chunk))`` are not timed). CPU time
    (``time.process_time_ns``) is not charged for time the process did not run: on a
    shared machine, most of the wall clock's noise."""
    wall_clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    wall = cpu = 0
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        w0, c0 = wall_clock(), cpu_clock()
        run(chunk)
        cpu += cpu_clock() - c0
        wall += wall_clock() - w0
        if advance is not None:
            advance(len(chunk))
    n = len(items)
    return n / (max(1, wall) / 1e9), n / (max(1, cpu) / 1e9)


def run_throughput_clocks(workload: Workload, advance: Any = None,
                          config: EngineConfig | None = None
                          ) -> tuple[float, float, MatchingEngine]:
    """Commands per wall-clock and per CPU second of a plain loop over every command (all
    events produced), on an engine with ``config`` (default: the workload's own)."""
    engine = _prefilled(workload, config)
    process = engine.process

    def run(chunk: list[Any]) -> None:
        p = process  # a local, not a closure cell, in the timed loop
        for cmd in chunk:
            p(cmd)

    wall, cpu = timed_chunks(run, workload.commands, advance)
    return wall, cpu, engine


def run_throughput(workload: Workload, advance: Any = None,
                   config: EngineConfig | None = None) -> tuple[float, MatchingEngine]:
    """Commands per wall-clock second of :func:`run_throughput_clocks`, and the engine."""
    wall, _cpu, engine = run_throughput_clocks(workload, advance, config)
    return wall, engine


def run_latency(workload: Workload, advance: Any = None) -> tuple[array[int], int, GcPauses]:
    """Per-command service time in ns (timer cost included), events produced, GC pauses."""
    engine = _prefilled(workload)
    process = engine.process
    commands = workload.commands
    samples = array("q", bytes(8 * len(commands)))
    clock = time.perf_counter_ns
    events = 0
    with GcPauses() as pauses:
        i = 0
        for start in range(0, len(commands), CHUNK):
            for cmd in commands[start:start + CHUNK]:
                t0 = clock()
                out = process(cmd)
                samples[i] = clock() - t0
                i += 1
                events += len(out)
            if advance is not None:
                advance(min(CHUNK, len(commands) - start))
    return samples, events, pauses


def _same_outcome(a: MatchingEngine, b: MatchingEngine) -> bool:
    """Same books, same id counters: the limits rejected nothing."""
    return ((a.next_order_id, a.next_trade_id) == (b.next_order_id, b.next_trade_id)
            and all(a.books[s].digest() == b.books[s].digest() for s in a.books))


PAIR_CHUNK = 5_000
"""Commands per timed slice in :func:`run_risk_comparison`."""


def run_risk_comparison(workload: Workload, rounds: int = 3,
                        advance: Any = None) -> dict[str, Any]:
    """Throughput without and with generous limits on every account, measured *paired*: two
    engines (limits off, limits on) run the same ``PAIR_CHUNK``-command slice one after the
    other (which goes first alternates), so that load from elsewhere on the machine hits both
    alike; ``rounds`` times over the whole stream with fresh engines.

    ``overhead_pct`` is the median over slices of ``on / off - 1`` by wall clock (robust to
    a busy machine), ``ratio`` the same as ``on / off`` time; ``cpu_overhead_pct`` the same
    median by the thread's CPU time (``time.thread_time_ns``: time the process was preempted
    does not count, which on a shared machine is most of the wall clock's noise);
    ``commands_per_second_off``/``_on`` the totals of the best round of each; ``build`` the
    build that ran (the checks cost differently compiled and pure)."""
    config = generous_limits(workload)
    commands = workload.commands
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    off_rates: list[float] = []
    on_rates: list[float] = []
    same = True
    for _ in range(rounds):
        plain = _prefilled(workload)
        limited = _prefilled(workload, config)
        pair = ((plain.process, 0), (limited.process, 1))
        totals = [0, 0]
        for n, start in enumerate(range(0, len(commands), PAIR_CHUNK)):
            chunk = commands[start:start + PAIR_CHUNK]
            took = [0, 0]
            took_cpu = [0, 0]
            for process, which in (pair if n % 2 == 0 else pair[::-1]):
                c0 = cpu()
                t0 = clock()
                for cmd in chunk:
                    process(cmd)
                took[which] = clock() - t0
                took_cpu[which] = cpu() - c0
            totals[0] += took[0]
            totals[1] += took[1]
            ratios.append(took[1] / took[0])
            if took_cpu[0] > 0:
                cpu_ratios.append(took_cpu[1] / took_cpu[0])
            if advance is not None:
                advance(2 * len(chunk))
        same = same and _same_outcome(plain, limited)
        del plain, limited
        off_rates.append(len(commands) / (totals[0] / 1e9))
        on_rates.append(len(commands) / (totals[1] / 1e9))
    ratios.sort()
    cpu_ratios.sort()
    median = ratios[len(ratios) // 2]
    cpu_median = cpu_ratios[len(cpu_ratios) // 2] if cpu_ratios else 0.0
    return {
        "rounds": rounds, "accounts_with_limits": len(config.account_limits),
        "slices": len(ratios), "slice_commands": PAIR_CHUNK,
        "build": build_describe(),
        "commands_per_second_off": round(max(off_rates)),
        "commands_per_second_on": round(max(on_rates)),
        "ratio": round(median, 4),
        "overhead_pct": round(100 * (median - 1), 2),
        "overhead_pct_p25_p75": [round(100 * (ratios[len(ratios) // 4] - 1), 2),
                                 round(100 * (ratios[3 * len(ratios) // 4] - 1), 2)],
        "cpu_overhead_pct": round(100 * (cpu_median - 1), 2) if cpu_ratios else None,
        "cpu_overhead_pct_p25_p75": [
            round(100 * (cpu_ratios[len(cpu_ratios) // 4] - 1), 2),
            round(100 * (cpu_ratios[3 * len(cpu_ratios) // 4] - 1), 2)] if cpu_ratios else None,
        "same_outcome": same,
    }


def run_seed_port(workload: Workload, limit: int, advance: Any = None) -> tuple[float, int]:
    """Commands per second of the seed's order book on the first ``limit`` commands."""
    runner = SeedPortRunner([inst.symbol for inst in workload.instruments])
    for cmd in workload.prefill:
        runner.apply(cmd)
    commands = workload.commands[:limit]
    clock = time.perf_counter_ns
    elapsed = 0
    for start in range(0, len(commands), CHUNK // 5):
        chunk = commands[start:start + CHUNK // 5]
        t0 = clock()
        for cmd in chunk:
            runner.apply(cmd)
        elapsed += clock() - t0
        if advance is not None:
            advance(len(chunk))
    return len(commands) / (elapsed / 1e9), runner.engine.trades


def _resting_orders(n: int) -> Iterator[NewOrder]:
    """``n`` non-crossing GTC orders, 10 per level, bids below 500,000 and asks above."""
    for i in range(n):
        side = BUY if i % 2 == 0 else SELL
        level = (i // 2) // 10
        price = 500_000 - 1 - level if side == BUY else 500_000 + 1 + level
        yield NewOrder(seq=i + 1, ts=i + 1, account=1 + i % 1000, symbol="MEM", side=side,
                       price=price, quantity=100)


def run_memory(n: int, advance: Any = None) -> dict[str, float]:
    """RSS growth (MB) of an engine holding ``n`` resting orders, and bytes per order."""
    gc.collect()
    before = current_rss_mb()
    engine = MatchingEngine([Instrument(symbol="MEM")])
    process = engine.process
    for i, cmd in enumerate(_resting_orders(n)):
        process(cmd)
        if advance is not None and i % CHUNK == CHUNK - 1:
            advance(CHUNK)
    gc.collect()
    grown = current_rss_mb() - before
    resting = len(engine.orders)
    del engine, process
    gc.collect()
    return {"resting_orders": resting, "rss_mb": round(grown, 1),
            "bytes_per_order": round(grown * (1 << 20) / max(1, resting), 1)}


def run(
    *, commands: int = 1_000_000, seed: int = 1, symbols: int = 1, with_seed_port: bool = True,
    seed_port_commands: int = 200_000, memory_orders: int = 1_000_000,
    latency_runs: int = 1, slow_ns: int = 30_000, json_path: Path | None = None,
    risk: bool = False, risk_rounds: int = 3, mix: bool = False, peers: bool = False,
    peer_rounds: int = 9, scale: bool = False, scale_commands: int = 100_000,
    scale_resting: tuple[int, ...] = SCALE_RESTING,
) -> dict[str, Any]:
    """Run every pass, print the report, write ``json_path``; return the results."""
    overhead = timer_overhead_ns()
    seed_limit = min(commands, seed_port_commands)
    with progress() as bar:
        gen = bar.add_task("generate workload", total=commands)
        workload = exchange_core_mix(commands, seed, symbols,
                                     progress=lambda done: bar.update(gen, completed=done))
        bar.update(gen, completed=commands)
        task = bar.add_task("throughput pass", total=commands)
        cps, engine = run_throughput(workload, lambda k: bar.advance(task, k))
        levels = sum(len(b.bids.levels) + len(b.asks.levels) for b in engine.books.values())
        digest = engine.digest()
        del engine
        task = bar.add_task("latency pass", total=commands * latency_runs)
        samples, events, pauses = run_latency(workload, lambda k: bar.advance(task, k))
        # Slow samples that recur on the same commands in every run point at the engine;
        # slow samples that move between runs point at the machine (preemption, noise).
        slow_sets = [{i for i, v in enumerate(samples) if v > slow_ns}]
        for _ in range(latency_runs - 1):
            again, _, _ = run_latency(workload, lambda k: bar.advance(task, k))
            slow_sets.append({i for i, v in enumerate(again) if v > slow_ns})
        seed_cps, seed_trades = 0.0, 0
        if with_seed_port:
            task = bar.add_task("seed port", total=seed_limit)
            seed_cps, seed_trades = run_seed_port(workload, seed_limit,
                                                  lambda k: bar.advance(task, k))
        risk_result: dict[str, Any] = {}
        if risk:
            task = bar.add_task("risk limits off/on", total=commands * 2 * risk_rounds)
            risk_result = run_risk_comparison(workload, risk_rounds,
                                              lambda k: bar.advance(task, k))
        mix_result: dict[str, Any] = {}
        if mix:
            task = bar.add_task("plain vs stops+icebergs", total=commands * 2 * 3)
            mix_result = run_mix(commands, seed, workload, 3, lambda k: bar.advance(task, k))
        peers_result: dict[str, Any] = {}
        if peers:
            from tickline.bench.peers import run_peers

            task = bar.add_task("peers (one process per run)", total=peer_rounds * 4)
            peers_result = run_peers(workload, peer_rounds, lambda k: bar.advance(task, k))
        scale_result: list[dict[str, Any]] = []
        if scale:
            task = bar.add_task("scale cells", total=len(scale_resting) * len(SCALE_TICKS))
            scale_result = run_scale(scale_commands, seed, scale_resting,
                                     advance=lambda k: bar.advance(task, k))
        memory: dict[str, float] = {}
        if memory_orders > 0:
            task = bar.add_task("1M-order book memory", total=memory_orders)
            memory = run_memory(memory_orders, lambda k: bar.advance(task, k))

    hist = histogram_of(samples)
    latency = percentiles(hist)
    trades_engine = workload.engine()
    result: dict[str, Any] = {
        "benchmark": "matching",
        "workload": {
            "name": "exchange-core mix", "commands": commands, "seed": seed, "symbols": symbols,
            "mix": workload.counts, "trading_command_fraction": round(workload.trade_fraction, 4),
            "resting_orders_at_end": workload.resting_at_end, "price_levels_at_end": levels,
        },
        "commands_per_second": round(cps),
        "events": events,
        "events_per_command": round(events / max(1, commands), 3),
        "latency_ns": {k: round(v) for k, v in latency.items()},
        "timer_overhead_ns": overhead,
        "gc": pauses.summary(),
        "tail": {
            "slow_ns": slow_ns, "latency_runs": latency_runs,
            "slow_samples_per_run": [len(x) for x in slow_sets],
            "slow_in_every_run": len(set.intersection(*slow_sets)),
        },
        "trades": _count_trades(workload, trades_engine),
        "engine_digest": digest,
        "seed_port_commands": seed_limit if with_seed_port else 0,
        "seed_port_commands_per_second": round(seed_cps),
        "seed_port_trades": seed_trades,
        "speedup_vs_seed_port": round(cps / seed_cps, 2) if seed_cps else None,
        "memory": memory,
        "risk": risk_result,
        "mix": mix_result,
        "peers": peers_result,
        "scale": scale_result,
        "build": build_describe(),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine": machine(),
    }
    if peers_result:  # the keys issue 13 names, at the top level too
        for key in ("compiled_commands_per_second", "pure_commands_per_second",
                    "liquibook_listener_commands_per_second", "liquibook_commands_per_second"):
            result[key] = peers_result[key]
    _print(result)
    _print_extras(result)
    write_json(json_path, result)
    return result


def _count_trades(workload: Workload, engine: MatchingEngine) -> int:
    """Trades executed by the timed commands (counted on a separate, untimed run)."""
    from tickline.matching import Trade

    for cmd in workload.prefill:
        engine.process(cmd)
    trades = 0
    for cmd in workload.commands:
        for event in engine.process(cmd):
            if type(event) is Trade:
                trades += 1
    return trades


STOPS = 0.05
ICEBERGS = 0.05
"""``--mix``: stops and icebergs, as fractions of the commands, on top of the plain mix."""


def run_mix(commands: int, seed: int, plain: Workload, rounds: int = 3,
            advance: Any = None) -> dict[str, Any]:
    """Throughput of the plain mix and of the mix with stops and icebergs, ``rounds``
    alternating passes each (medians)."""
    mixed = exchange_core_mix(commands, seed, stops=STOPS, icebergs=ICEBERGS)
    rates: dict[str, list[float]] = {"plain": [], "mix": []}
    for n in range(rounds):
        order = (("plain", plain), ("mix", mixed))
        for name, work in order if n % 2 == 0 else order[::-1]:
            rates[name].append(run_throughput(work)[0])
            if advance is not None:
                advance(len(work.commands))
    p, m = statistics.median(rates["plain"]), statistics.median(rates["mix"])
    return {
        "rounds": rounds, "stops": STOPS, "icebergs": ICEBERGS,
        "mix_counts": mixed.counts, "mix_commands": len(mixed.commands),
        "plain_commands_per_second": round(p),
        "stops_icebergs_commands_per_second": round(m),
        "ratio": round(m / p, 3),
    }


def run_scale(commands: int, seed: int, resting: tuple[int, ...] = SCALE_RESTING,
              ticks: tuple[int, ...] = SCALE_TICKS, advance: Any = None) -> list[dict[str, Any]]:
    """One cell per (price spread, resting orders): the mix generated around a book of
    ``resting`` orders whose prices spread over about ``ticks`` ticks (half each side of the
    mid); commands/s of a throughput pass and the p99.99 of a latency pass. The generator
    steers the book to stay near ``resting`` orders, so the size holds for the whole run."""
    cells: list[dict[str, Any]] = []
    for spread in ticks:
        for n in resting:
            work = exchange_core_mix(commands, seed, resting=n, levels=max(1, spread // 2))
            cps, engine = run_throughput(work)
            levels = sum(len(b.bids.levels) + len(b.asks.levels) for b in engine.books.values())
            del engine
            samples, _events, _pauses = run_latency(work)
            lat = percentiles(histogram_of(samples))
            cells.append({"ticks": spread, "resting_orders": n,
                          "resting_at_end": work.resting_at_end, "price_levels_at_end": levels,
                          "commands_per_second": round(cps),
                          "p50_ns": round(lat["p50"]), "p99_99_ns": round(lat["p99_99"])})
            del work, samples
            gc.collect()
            if advance is not None:
                advance(1)
    for cell in cells:
        base = next(c for c in cells if c["ticks"] == cell["ticks"])
        cell["vs_smallest"] = round(cell["commands_per_second"] / base["commands_per_second"], 3)
    return cells


def _print_extras(r: dict[str, Any]) -> None:
    """The ``--mix``, ``--peers`` and ``--scale`` tables."""
    if r.get("mix"):
        k = r["mix"]
        t = Table(title=f"plain mix vs + {k['stops']:.0%} stops, {k['icebergs']:.0%} icebergs "
                        f"(median of {k['rounds']} alternating passes)")
        t.add_column("workload")
        t.add_column("commands/s", justify="right")
        t.add_row("exchange-core mix", f"{k['plain_commands_per_second']:,}")
        t.add_row(f"+ stops ({k['mix_counts']['stop']:,}) and icebergs "
                  f"({k['mix_counts']['iceberg']:,})",
                  f"{k['stops_icebergs_commands_per_second']:,} ({k['ratio']}x)")
        console.print(t)
    if r.get("peers"):
        _print_peers(r["peers"])
    if r.get("scale"):
        t = Table(title="cost as the book grows (throughput pass; p99.99 of a latency pass)")
        for col in ("price spread (ticks)", "resting orders", "levels at end", "commands/s",
                    "vs 1,000 resting", "p99.99 µs"):
            t.add_column(col, justify="right")
        for c in r["scale"]:
            t.add_row(f"{c['ticks']:,}", f"{c['resting_orders']:,}",
                      f"{c['price_levels_at_end']:,}", f"{c['commands_per_second']:,}",
                      f"{c['vs_smallest']}x", f"{c['p99_99_ns'] / 1000:.1f}")
        console.print(t)


def _print_peers(k: dict[str, Any]) -> None:
    """The ``--peers`` table: per variant, median and spread by wall clock and by CPU time;
    the ratios of the medians and the medians (p25..p75) of the paired per-round ratios."""
    t = Table(title=f"peers on the same {k['commands']:,} commands ({k['rounds']} interleaved "
                    f"rounds, one process each; load average {k['load_average_before'][0]} "
                    f"-> {k['load_average_after'][0]}, steal {k['steal_fraction']:.1%})")
    t.add_column("engine")
    for col in ("commands/s (median)", "wall min..max", "CPU-time commands/s", "CPU p25..p75"):
        t.add_column(col, justify="right")
    names = {"compiled": "tickline compiled", "pure": "tickline pure Python",
             "liquibook_listener": "liquibook, Python fill listener",
             "liquibook": "liquibook, no listener"}
    for key, name in names.items():
        v, w = k.get(f"{key}_commands_per_second"), k.get(f"{key}_spread")
        c, cs = k.get(f"{key}_cpu_commands_per_second"), k.get(f"{key}_cpu_spread")
        if not v or not w or not c or not cs:
            t.add_row(name, "not available", "", "", "")
            continue
        t.add_row(name, f"{v:,}", f"{w['min']:,.0f}..{w['max']:,.0f}", f"{c:,}",
                  f"{cs['p25']:,.0f}..{cs['p75']:,.0f}")
    console.print(t)
    console.print(f"compiled build: {k.get('compiled_build', 'not built')}")
    t = Table(title="ratios: of the medians, and the median (p25..p75) of the per-round ratios")
    for col in ("ratio", "wall", "wall paired", "CPU", "CPU paired"):
        t.add_column(col, justify="right" if col != "ratio" else "left")
    for name, wall in k["ratios"].items():
        if wall is None:
            continue
        pw, pc = k["paired_ratios"][name], k["paired_ratios_cpu"][name]
        t.add_row(name, f"{wall}", f"{pw['median']:.2f} ({pw['p25']:.2f}..{pw['p75']:.2f})",
                  f"{k['ratios_cpu'][name]}",
                  f"{pc['median']:.2f} ({pc['p25']:.2f}..{pc['p75']:.2f})")
    console.print(t)


def _print(r: dict[str, Any]) -> None:
    w = r["workload"]
    table = Table(title=f"tickline bench matching — {w['name']}, {w['commands']:,} commands, "
                        f"{w['symbols']} symbol(s), seed {w['seed']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("commands/s (tickline engine)", f"{r['commands_per_second']:,}")
    if r["seed_port_commands_per_second"]:
        table.add_row(f"commands/s (seed port, first {r['seed_port_commands']:,})",
                      f"{r['seed_port_commands_per_second']:,}")
        table.add_row("speed-up vs seed port", f"{r['speedup_vs_seed_port']}x")
    table.add_row("events produced (per command)",
                  f"{r['events']:,} ({r['events_per_command']})")
    table.add_row("trades executed", f"{r['trades']:,}")
    table.add_row("commands that traded", f"{w['trading_command_fraction']:.1%}")
    table.add_row("mix (new GTC / IOC / cancel / move)",
                  " / ".join(f"{w['mix'][k]:,}" for k in ("new_gtc", "ioc", "cancel", "move")))
    table.add_row("resting orders / price levels at end",
                  f"{w['resting_orders_at_end']:,} / {w['price_levels_at_end']:,}")
    table.add_row("timer overhead per sample (included)", f"{r['timer_overhead_ns']} ns")
    tail = r["tail"]
    if tail["latency_runs"] > 1:
        table.add_row(f"samples > {tail['slow_ns'] / 1000:.0f} µs per run / slow in every run",
                      f"{tail['slow_samples_per_run']} / {tail['slow_in_every_run']}")
    gc_info = r["gc"]
    table.add_row("GC during latency pass",
                  f"{gc_info['collections']} collections, max {gc_info['max_pause_us']:.1f} µs, "
                  f"total {gc_info['total_pause_ms']:.1f} ms")
    if r["memory"]:
        m = r["memory"]
        table.add_row(f"memory of {m['resting_orders']:,} resting orders",
                      f"{m['rss_mb']:,} MB ({m['bytes_per_order']} B/order)")
    if r["risk"]:
        k = r["risk"]
        table.add_row(f"commands/s risk limits off / on (best of {k['rounds']})",
                      f"{k['commands_per_second_off']:,} / {k['commands_per_second_on']:,}")
        table.add_row(f"risk check overhead, {k['build'].split(':')[0]} build (median of "
                      f"{k['slices']} paired slices, p25..p75)",
                      f"{k['overhead_pct']:+}% wall, on/off {k['ratio']}x "
                      f"({k['overhead_pct_p25_p75'][0]}..{k['overhead_pct_p25_p75'][1]}%; "
                      f"{k['accounts_with_limits']:,} accounts limited"
                      f"{'' if k['same_outcome'] else ', OUTCOME DIFFERS'})")
        if k["cpu_overhead_pct"] is not None:
            cpu_q = k["cpu_overhead_pct_p25_p75"]
            table.add_row("risk check overhead by CPU time (same slices)",
                          f"{k['cpu_overhead_pct']:+}% ({cpu_q[0]}..{cpu_q[1]}%)")
    table.add_row("peak RSS", f"{r['peak_rss_mb']:,} MB")
    table.add_row("build", r["build"])
    console.print(table)
    lat = {k: v / 1000 for k, v in r["latency_ns"].items()}
    console.print(latency_table("per-command latency", {"engine.process()": lat}, "µs"))
