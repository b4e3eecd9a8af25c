"""Interleaved rounds of ``tickline bench cluster`` settings on one tree: the window of input
batches in flight (``--batches-in-flight``) and the engine nodes' frozen start-up heap
(``[server] gc_freeze`` of ``tickline cluster-engine``; ``nofreeze`` runs the engines with
``gc_freeze = false``, which is what they did before 2026-12-04 evening).

    python benchmarks/cluster_ab.py --rounds 4 --rate 10000 --duration 3 --runs 3 \\
        freeze:4 nofreeze:4 freeze:8 freeze:1 freeze:0

Each argument is ``freeze|nofreeze:WINDOW``; every round runs each of them once, in order,
each with its own processes (the bench's layout: private nats-server, leader, standby,
gateway, load generator). Prints every run and, per setting, the medians over the rounds of
the runs' medians, with the load average around each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any


def _one(setting: str, rate: float, duration: float, runs: int) -> dict[str, Any]:
    from tickline.bench import cluster as bc

    mode, window = setting.split(":")
    orig_engine = bc._engine

    def engine(url: str, tmp: Path, name: str, lease: float) -> Any:
        if mode == "freeze":
            return orig_engine(url, tmp, name, lease)
        toml = tmp / "engine.toml"
        toml.write_text("[server]\ngc_freeze = false\n")
        return bc._Proc([*bc._TICKLINE, "cluster-engine", "--cluster", url, "--lease",
                         str(lease), "--node-id", name, "--snapshot-every", "100000",
                         "--config", str(toml)], tmp / f"{name}.log")

    bc._engine = engine  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as d:
            out = bc.run(rates=[rate], duration=duration, runs=runs, failovers=0, lease=1.0,
                         sessions=4, json_path=Path(d) / "r.json",
                         batches_in_flight=int(window))
    finally:
        bc._engine = orig_engine  # type: ignore[assignment]
    m = out["load"][str(int(rate))]
    return {"achieved": m["achieved_rate"], "p50": m["p50_us"] / 1e3, "p99": m["p99_us"] / 1e3,
            "load": (out["machine"]["loadavg_at_start"][0], out["machine"]["loadavg_at_end"][0])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=10_000)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in a.settings}
    for r in range(a.rounds):
        for s in a.settings:
            res = _one(s, a.rate, a.duration, a.runs)
            got[s].append(res)
            print(f"round {r + 1} {s:12} achieved {res['achieved']:8,.0f}/s p50 "
                  f"{res['p50']:6.2f} ms p99 {res['p99']:6.2f} ms load {res['load'][0]:.2f}-"
                  f"{res['load'][1]:.2f}", flush=True)
    for s, rs in got.items():
        print(f"{s:12} median of {len(rs)}: p50 {statistics.median(x['p50'] for x in rs):6.2f}"
              f" ms p99 {statistics.median(x['p99'] for x in rs):6.2f} ms (p99s "
              f"{', '.join(format(x['p99'], '.1f') for x in rs)})")
    print(f"load average now {os.getloadavg()[0]:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
