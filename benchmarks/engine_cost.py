"""Instructions the matching engine spends per command on a fixed workload, for A/B
comparisons of two engine trees (two commits, pure vs compiled) under callgrind.

``prepare OUT``: generate the exchange-core mix (``--mix plain``) or the same mix with 5%
stops and 5% icebergs (``--mix stops``, :func:`tickline.bench.workload.exchange_core_mix`)
and pickle every command as a plain ``(kind, fields)`` tuple, so that an engine tree of any
commit can rebuild the commands with its own classes.

``run FILE [--load-only]``: rebuild the commands with the ``tickline.matching`` found on
``sys.path`` (``PYTHONPATH=/tmp/old/src``: a tree from ``git archive``), prefill the book,
then process the timed commands (``--load-only``: stop before that, the cost to subtract).
Instruction counts are deterministic, so ``(run - load) / commands`` per tree gives the
ratio without wall-clock noise::

    valgrind --tool=callgrind --callgrind-out-file=cg.out \
        python benchmarks/engine_cost.py run plain.pickle
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

FIELDS = {
    "NewOrder": ("seq", "ts", "account", "symbol", "side", "price", "quantity", "tif",
                 "order_type", "stop_price", "display_quantity"),
    "Cancel": ("seq", "ts", "account", "symbol", "order_id"),
    "Replace": ("seq", "ts", "account", "symbol", "order_id", "price"),
}
DEFAULTS = {"order_type": 0, "stop_price": 0, "display_quantity": 0}
"""Fields left out when they hold these values, so that trees without them load the file."""


def _plain(cmd: Any) -> tuple[str, dict[str, Any]]:
    kind = type(cmd).__name__
    fields = {f: getattr(cmd, f) for f in FIELDS[kind] if hasattr(cmd, f)}
    for name, default in DEFAULTS.items():
        if fields.get(name, default) == default:
            fields.pop(name, None)
    return kind, fields


def prepare(out: Path, mix: str, commands: int) -> None:
    from tickline.bench.workload import exchange_core_mix

    extra = 0.05 if mix == "stops" else 0.0
    work = exchange_core_mix(commands, seed=7, stops=extra, icebergs=extra)
    inst = work.instruments[0]
    data = {
        "instrument": {"symbol": inst.symbol, "tick_size": inst.tick_size,
                       "lot_size": inst.lot_size, "price_decimals": inst.price_decimals},
        "prefill": [_plain(c) for c in work.prefill],
        "commands": [_plain(c) for c in work.commands],
    }
    with out.open("wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    print(f"{out}: {len(data['prefill'])} prefill + {len(data['commands'])} commands ({mix})")


def run(path: Path, load_only: bool) -> None:
    import tickline.matching as m

    with path.open("rb") as f:
        data = pickle.load(f)
    classes = {"NewOrder": m.NewOrder, "Cancel": m.Cancel, "Replace": m.Replace}
    engine = m.MatchingEngine([m.Instrument(**data["instrument"])], m.EngineConfig())
    prefill = [classes[k](**f) for k, f in data["prefill"]]
    commands = [classes[k](**f) for k, f in data["commands"]]
    process = engine.process
    for cmd in prefill:
        process(cmd)
    if load_only:
        return
    t0 = time.perf_counter_ns()
    for cmd in commands:
        process(cmd)
    elapsed = time.perf_counter_ns() - t0
    print(f"{m.__file__}: {len(commands)} commands, {len(engine.orders)} resting, "
          f"{len(commands) / (elapsed / 1e9):.0f} commands/s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    p.add_argument("--mix", choices=("plain", "stops"), default="plain")
    p.add_argument("--commands", type=int, default=20_000)
    r = sub.add_parser("run")
    r.add_argument("file", type=Path)
    r.add_argument("--load-only", action="store_true")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.out, args.mix, args.commands)
    else:
        run(args.file, args.load_only)


if __name__ == "__main__":
    main()
