"""Shared pieces of every benchmark report: percentiles from HDR histograms, the machine
description, rich tables and JSON output."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9), ("p99_99", 99.99),
)

console = Console(stderr=True)


def histogram_of(values_ns: Iterable[int], highest_ns: int = 60_000_000_000) -> HdrHistogram:
    """An HDR histogram (3 significant digits) of nanosecond values. Recording costs about
    a microsecond per value in Python, so harnesses keep raw values in an ``array('q')``
    while timing and fold them in afterwards."""
    hist = HdrHistogram(1, highest_ns, 3)
    record = hist.record_value
    for value in values_ns:
        record(value if value > 0 else 1)
    return hist


def percentiles(hist: HdrHistogram, scale: float = 1.0) -> dict[str, float]:
    """``p50 .. p99_99`` and ``max`` of ``hist``, divided by ``scale`` (e.g. 1000 for µs)."""
    out = {name: hist.get_value_at_percentile(p) / scale for name, p in PERCENTILES}
    out["max"] = hist.get_max_value() / scale
    out["count"] = hist.get_total_count()
    return out


def timer_overhead_ns(samples: int = 200_000) -> int:
    """Median cost of one back-to-back ``perf_counter_ns`` pair: what per-event timing adds
    to every latency sample."""
    clock = time.perf_counter_ns
    values = array("q", bytes(8 * samples))
    for i in range(samples):
        t0 = clock()
        values[i] = clock() - t0
    return sorted(values)[samples // 2]


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu or platform.processor(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError):
        return peak_rss_mb()


def progress() -> Progress:
    """The progress bar every long-running benchmark shows (on stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
    )


def latency_table(title: str, rows: dict[str, dict[str, float]], unit: str) -> Table:
    """A table of percentile rows (one per measured thing)."""
    table = Table(title=title)
    table.add_column("")
    for name, _ in PERCENTILES:
        table.add_column(name.replace("_", "."), justify="right")
    table.add_column("max", justify="right")
    for label, pct in rows.items():
        table.add_row(label, *(f"{pct[name]:,.2f}" for name, _ in PERCENTILES),
                      f"{pct['max']:,.2f}")
    table.caption = f"latency in {unit}"
    return table


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {path}")
