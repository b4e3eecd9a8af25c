"""Run every ``tickline bench`` benchmark and write each result as JSON into
``benchmarks/results/<name>.json`` (names on the command line select a subset)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCHMARKS: dict[str, list[str]] = {
    "matching": ["bench", "matching", "--latency-runs", "3"],
    "processor": ["bench", "processor"],
    "stream": ["bench", "stream"],
    "journal": ["bench", "journal", "--records", "1000000"],
}


def main(names: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    tickline = Path(sys.executable).with_name("tickline")
    failed = 0
    for name in names or list(BENCHMARKS):
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
            return 2
        out = RESULTS / f"{name}.json"
        print(f"== tickline {' '.join(BENCHMARKS[name])} --json {out}", flush=True)
        failed += subprocess.call([str(tickline), *BENCHMARKS[name], "--json", str(out)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
