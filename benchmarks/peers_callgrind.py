"""Instructions per command of tickline (compiled and pure) and liquibook (with and without
a Python fill listener) on the same commands: the deterministic companion of
``tickline bench matching --peers``, whose wall-clock ratios move a lot on a shared VM.

    python benchmarks/peers_callgrind.py prepare /tmp/peers20k.pkl --commands 20000
    python benchmarks/peers_callgrind.py measure /tmp/peers20k.pkl [--json out.json]

``prepare`` generates the exchange-core mix (``exchange_core_mix(N, seed)``) and translates
it into liquibook operations exactly as ``--peers`` does
(:func:`tickline.bench.peers._liquibook_ops`), and pickles both, so every variant runs the
very same commands. ``measure`` runs each variant under ``valgrind --tool=callgrind`` twice,
with all ``N`` timed commands and with none (loading, prefill and interpreter start-up
only), ``PYTHONHASHSEED=0``; instructions per command = (total with ``N`` - total with 0) /
``N``. ``pure`` runs with ``TICKLINE_PURE=1``; ``compiled`` needs ``make compiled`` (it is
left out, with a note, otherwise); the liquibook variants need the ``peers`` extra.
``run PATH VARIANT N`` is what each valgrind run executes.

Instructions are not time (a cache miss costs many), but they repeat to a few parts per
million, so they settle A/B questions that wall clock on this machine cannot.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path
from typing import Any

import callgrind

VARIANTS = ("compiled", "pure", "liquibook_listener", "liquibook")


def prepare(path: str, commands: int, seed: int) -> None:
    from tickline.bench.peers import _liquibook_ops
    from tickline.bench.workload import exchange_core_mix

    workload = exchange_core_mix(commands, seed)
    lb_prefill, lb_ops = _liquibook_ops(workload)
    with open(path, "wb") as f:
        pickle.dump({"workload": workload, "lb_prefill": lb_prefill, "lb_ops": lb_ops}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)


def run(path: str, variant: str, n: int) -> None:
    with open(path, "rb") as f:
        data = pickle.load(f)  # our own file
    if variant.startswith("liquibook"):
        from tickline.bench.peers import liquibook_book

        _alive, apply, _fills = liquibook_book(variant == "liquibook_listener")
        apply(data["lb_prefill"])
        apply(data["lb_ops"][:n])
        return
    workload = data["workload"]
    engine = workload.engine()
    process = engine.process
    for cmd in workload.prefill:
        process(cmd)
    for cmd in workload.commands[:n]:
        process(cmd)


def _instructions(path: str, variant: str, n: int) -> int:
    return callgrind.instructions(__file__, ["run", path, variant, str(n)],
                                  pure=variant == "pure")


def measure(path: str, json_path: str | None) -> None:
    from tickline._build import build_info
    from tickline.bench.peers import liquibook_available

    with open(path, "rb") as f:
        n = len(pickle.load(f)["workload"].commands)
    variants = [v for v in VARIANTS
                if (v != "compiled" or build_info()["build"] == "compiled")
                and (not v.startswith("liquibook") or liquibook_available())]
    per: dict[str, float] = {}
    for variant in variants:
        full, empty = _instructions(path, variant, n), _instructions(path, variant, 0)
        per[variant] = (full - empty) / n
        print(f"{variant:20} {per[variant]:10,.0f} instructions/command", flush=True)
    ratios = {f"{a}_vs_{b}": round(per[b] / per[a], 3)  # a throughput ratio: fewer is faster
              for a in ("compiled", "pure") for b in ("liquibook_listener", "liquibook", "pure")
              if a in per and b in per and a != b}
    for name, value in ratios.items():
        print(f"{name:36} {value}")
    if json_path:
        doc: dict[str, Any] = {"commands": n, "instructions_per_command": per,
                               "ratios_by_instructions": ratios,
                               "build": build_info()["build"]}
        Path(json_path).write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("path")
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run")
    r.add_argument("path")
    r.add_argument("variant", choices=VARIANTS)
    r.add_argument("n", type=int)
    m = sub.add_parser("measure")
    m.add_argument("path")
    m.add_argument("--json")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.path, args.commands, args.seed)
    elif args.what == "run":
        run(args.path, args.variant, args.n)
    else:
        measure(args.path, args.json)


if __name__ == "__main__":
    main()
