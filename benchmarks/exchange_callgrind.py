"""Instructions per command of the whole in-process exchange loop (``tickline bench
exchange``'s loop: submit_many, sequence, match, journal, publish, reports, bus delivery),
the deterministic companion of its wall-clock figures.

    python benchmarks/exchange_callgrind.py prepare /tmp/ex20k.pkl --commands 20000
    python benchmarks/exchange_callgrind.py measure /tmp/ex20k.pkl [--durability none]

``measure`` runs the loop under ``valgrind --tool=callgrind`` with all ``N`` commands and with
the first :data:`BASE` only (start-up, prefill, journal creation, warm-up), ``PYTHONHASHSEED=0``,
the loaded workload frozen out of the collector (``gc.freeze()``), engine time and the stage
clock ticking 1 µs per read (``run_loop(deterministic=True)``: no wall-clock deadline missed
because valgrind is slow, so every run takes the same paths),
for the build in use and for the pure-Python modules (``TICKLINE_PURE=1``); instructions per
command = (total with ``N`` - total with ``BASE``) / (``N`` - ``BASE``), and the same for a
plain engine loop (``match only``) on the same commands. ``run PATH N DURABILITY
loop|engine`` is what each valgrind run executes.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import tempfile
from pathlib import Path
from typing import Any

import callgrind

BASE = 1_000
"""Commands of the baseline run (subtracted)."""


def prepare(path: str, commands: int, seed: int) -> None:
    from tickline.bench.workload import exchange_core_mix

    with open(path, "wb") as f:
        pickle.dump(exchange_core_mix(commands, seed), f, protocol=pickle.HIGHEST_PROTOCOL)


def run(path: str, n: int, durability: str, what: str) -> None:
    with open(path, "rb") as f:
        workload = pickle.load(f)  # our own file
    workload.commands = workload.commands[:n]
    # The loaded workload out of every later collection: otherwise whether a full
    # collection (a walk of the whole heap, ~20M instructions here) falls inside the N run
    # or the BASE run is a step that moved "per command" by +-10,000 between two trees.
    # The loop's own young-generation collections still count.
    gc.collect()
    gc.freeze()
    if what == "engine":
        engine = workload.engine()
        process = engine.process
        for cmd in workload.prefill:
            process(cmd)
        for cmd in workload.commands:
            process(cmd)
        return
    from tickline.bench.exchange import run_loop

    with tempfile.TemporaryDirectory(prefix="ex-cg-") as tmp:
        run_loop(workload, durability, 64, Path(tmp), deterministic=True)


def _instructions(path: str, n: int, durability: str, what: str, pure: bool) -> int:
    return callgrind.instructions(__file__, ["run", path, str(n), durability, what], pure=pure)


def measure(path: str, durability: str) -> None:
    from tickline._build import build_info

    with open(path, "rb") as f:
        n = len(pickle.load(f).commands)
    builds = [True] if build_info()["build"] == "pure" else [False, True]
    for pure in builds:
        per: dict[str, Any] = {}
        for what in ("loop", "engine"):
            full = _instructions(path, n, durability, what, pure)
            base = _instructions(path, BASE, durability, what, pure)
            per[what] = (full - base) / (n - BASE)
        name = "pure" if pure else "compiled"
        print(f"{name:9} loop ({durability}) {per['loop']:9,.0f}  match only "
              f"{per['engine']:8,.0f}  rest of the loop {per['loop'] - per['engine']:8,.0f} "
              "instructions/command", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("path")
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run")
    r.add_argument("path")
    r.add_argument("n", type=int)
    r.add_argument("durability")
    r.add_argument("kind", choices=("loop", "engine"))
    m = sub.add_parser("measure")
    m.add_argument("path")
    m.add_argument("--durability", default="none")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.path, args.commands, args.seed)
    elif args.what == "run":
        run(args.path, args.n, args.durability, args.kind)
    else:
        measure(args.path, args.durability)


if __name__ == "__main__":
    main()
