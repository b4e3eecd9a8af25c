"""Run ``tickline serve ...`` with every garbage collection logged, to see which collections a
load causes and what each one costs (docs/fix.md, "GC stalls").

Each collection is one JSON line in ``$GCLOG`` (default ``gc.jsonl``): wall time, generation,
pause (wall and CPU ms, from ``gc.callbacks``), ``gc.get_count()`` before it, objects
collected, and for a full collection the number of objects left in generation 2. ``kill -USR1``
the server to add a line with the tracked objects by type (``TYPES``). Summary of a log,
optionally only the collections between two Unix times (the load)::

    GCLOG=/tmp/gc.jsonl python benchmarks/gc_log_serve.py serve --durability none --fix-port P
    python benchmarks/gc_log_serve.py summary /tmp/gc.jsonl [FROM TO]
"""

from __future__ import annotations

import collections
import gc
import json
import os
import signal
import sys
import time
from typing import Any


def install(path: str) -> None:
    log = open(path, "w")  # noqa: SIM115 - open for the life of the process
    state: dict[str, Any] = {}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state["wall"] = time.perf_counter_ns()
            state["cpu"] = time.process_time_ns()
            state["count"] = gc.get_count()
            return
        line: dict[str, Any] = {
            "t": round(time.time(), 3), "gen": info["generation"],
            "ms": round((time.perf_counter_ns() - state["wall"]) / 1e6, 3),
            "cpu_ms": round((time.process_time_ns() - state["cpu"]) / 1e6, 3),
            "count": state["count"], "collected": info["collected"]}
        if info["generation"] == 2:
            line["n2"] = len(gc.get_objects(2))
        log.write(json.dumps(line) + "\n")
        log.flush()

    def types(*_args: object) -> None:
        counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
        log.write(f"TYPES {sum(counts.values())} {json.dumps(counts.most_common(30))}\n")
        log.flush()

    gc.callbacks.append(callback)
    signal.signal(signal.SIGUSR1, types)


def summary(path: str, start: float = 0.0, end: float = float("inf")) -> None:
    pauses: dict[int, list[float]] = collections.defaultdict(list)
    with open(path) as f:
        for text in f:
            if text.startswith("{"):
                line = json.loads(text)
                if start <= line["t"] <= end:
                    pauses[line["gen"]].append(line["cpu_ms"])
    for gen in sorted(pauses):
        v = sorted(pauses[gen])
        print(f"gen {gen}: {len(v)} collections, CPU ms total {sum(v):.1f}, "
              f"median {v[len(v) // 2]:.2f}, max {v[-1]:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["summary"]:
        summary(sys.argv[2], *(float(a) for a in sys.argv[3:5]))
    else:
        install(os.environ.get("GCLOG", "gc.jsonl"))
        from tickline.cli import main

        sys.exit(main())
