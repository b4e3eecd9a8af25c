"""``tickline bench venue``: what the venue services cost — resume and mass cancel.

Measured in one run, on one journal (so the numbers compare on a shared machine):

1. **Build** (not timed): an exchange with a journal (durability ``none``) where account 1
   rests ``missed / 2`` one-lot sells and account 2 takes each with an IOC, so account 1
   has ``missed`` reports (a NEW and a FILL per order) that a session of it never saw.
2. **Resume from the journal**: :func:`tickline.resume.replay_reports` rebuilds those
   ``missed`` reports from the journal (no snapshot: the worst case, every command
   replayed), checked to be exactly 1..missed; and the same from the newest snapshot taken
   half way (the server's normal case). Reports/s and seconds.
3. **Resume from memory**: the same reports served from the exchange's report history.
4. **Mass cancel**: account 3 rests ``mass`` orders, then one ``MassCancel`` through the
   exchange (sequence, match, journal, reports): the time of that one command, and the
   engine alone on the same book.

JSON keys other tools read: ``resume_journal_seconds``, ``resume_journal_reports_per_second``,
``resume_snapshot_seconds``, ``resume_memory_seconds``, ``mass_cancel_seconds``,
``mass_cancel_orders_per_second``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tickline.bench.report import machine, write_json
from tickline.exchange import Exchange
from tickline.matching import BUY, SELL, Instrument, MassCancel, MatchingEngine, NewOrder
from tickline.matching.types import IOC
from tickline.resume import replay_reports

__all__ = ["run"]


def _fill(ex: Exchange, n: int, chunk: int = 2000) -> None:
    """Account 1 rests ``n`` one-lot sells, account 2 takes each one (2n reports for 1)."""
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        for i in range(k):
            ex.submit(NewOrder(account=1, symbol="ABC", side=SELL, price=100 + (start + i) % 50,
                               quantity=1))
        ex.pump()
        for _ in range(k):
            ex.submit(NewOrder(account=2, symbol="ABC", side=BUY, price=200, quantity=1,
                               tif=IOC))
        ex.pump()


def run(*, missed: int = 100_000, mass: int = 10_000, json_path: Path | None = None,
        keep: Path | None = None) -> dict[str, Any]:
    console = Console()
    directory = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="tl-venue-"))
    inst = [Instrument(symbol="ABC")]
    try:
        ex = Exchange(inst, journal_dir=directory, durability="none", snapshot_every=0,
                      report_history=missed + 16)
        half = missed // 4
        with console.status(f"building {missed:,} reports of account 1 ..."):
            _fill(ex, half)
            ex.snapshot()  # half way: the newest snapshot before the end
            _fill(ex, missed // 2 - half)
        total = ex.reports.last_seq(1)
        last_cmd = ex.engine.last_seq

        t0 = time.perf_counter()
        got = replay_reports(directory, 1, 0, total, last_cmd)
        journal_s = time.perf_counter() - t0
        assert [r.seq for r in got] == list(range(1, total + 1))
        after = total // 2
        t0 = time.perf_counter()
        tail = replay_reports(directory, 1, after, total, last_cmd)
        snapshot_s = time.perf_counter() - t0
        assert len(tail) == total - after
        t0 = time.perf_counter()
        mem = ex.history.after(1, 0, total)
        memory_s = time.perf_counter() - t0
        assert mem is not None and len(mem) == total

        for i in range(mass):
            ex.submit(NewOrder(account=3, symbol="ABC", side=BUY, price=1 + i % 90,
                               quantity=1))
        ex.pump()
        engine = MatchingEngine(inst)
        engine.restore(ex.engine.snapshot())
        cancelled: list[Any] = []
        ex.submit(MassCancel(account=3), lambda _c, _e, reports: cancelled.extend(reports))
        t0 = time.perf_counter()
        ex.pump()
        mass_s = time.perf_counter() - t0
        assert len(cancelled) == mass, len(cancelled)
        t0 = time.perf_counter()
        events = engine.process(MassCancel(seq=engine.last_seq + 1, ts=engine.now + 1,
                                           account=3))
        engine_s = time.perf_counter() - t0
        assert sum(1 for e in events if type(e).__name__ == "Cancelled") == mass
        ex.close()
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)

    result = {
        "machine": machine(),
        "missed_reports": total,
        "journal_commands": last_cmd,
        "resume_journal_seconds": journal_s,
        "resume_journal_reports_per_second": total / journal_s,
        "resume_snapshot_reports": total - after,
        "resume_snapshot_seconds": snapshot_s,
        "resume_memory_seconds": memory_s,
        "mass_cancel_orders": mass,
        "mass_cancel_seconds": mass_s,
        "mass_cancel_orders_per_second": mass / mass_s,
        "mass_cancel_engine_seconds": engine_s,
    }
    table = Table(title="venue services")
    table.add_column("what")
    table.add_column("result", justify="right")
    table.add_row(f"resume {total:,} missed reports from the journal (no snapshot)",
                  f"{journal_s:.2f} s ({total / journal_s:,.0f} reports/s)")
    table.add_row(f"resume {total - after:,} from the newest snapshot before them",
                  f"{snapshot_s:.2f} s")
    table.add_row(f"resume {total:,} from memory", f"{memory_s * 1e3:.1f} ms")
    table.add_row(f"mass cancel of {mass:,} orders, one command through the exchange",
                  f"{mass_s * 1e3:.1f} ms ({mass / mass_s:,.0f} orders/s)")
    table.add_row("  the engine alone", f"{engine_s * 1e3:.1f} ms")
    console.print(table)
    write_json(json_path, result)
    return result
