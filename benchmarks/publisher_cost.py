"""Instructions spent in the market-data publisher on a fixed workload, for A/B comparisons
of two publisher implementations under ``valgrind --tool=callgrind``.

``prepare OUT``: run a workload through a matching engine once and pickle every command's
``(seq, ts, events)`` to ``OUT`` (``--mix plain``: the exchange-core mix; ``--mix ice``:
the same mix plus icebergs and stops from the test suite's random streams).

``run FILE --publisher PATH|none``: load the events and publish them in batches of 16 with a
subscriber on every topic of every symbol (the costliest case: every message is built),
through the publisher module at ``PATH`` (e.g. one taken from ``git show main:...``), or
not at all (``none``: the loading cost, to subtract). Instruction counts are deterministic,
so two runs of each variant in one session give the A/B ratio without wall-clock noise::

    valgrind --tool=callgrind --callgrind-out-file=cg.%p python benchmarks/publisher_cost.py \
        run events.pickle --publisher src/tickline/stream/publisher.py
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import random
import sys
from pathlib import Path
from typing import Any


def prepare(out: Path, mix: str, commands: int) -> None:
    from tickline.bench.workload import exchange_core_mix
    from tickline.matching import BUY, NewOrder
    from tickline.matching.types import GTC, STOP, STOP_LIMIT

    work = exchange_core_mix(commands, seed=11)
    engine = work.engine()
    inst = work.instruments[0]
    prefill = [(c.seq, c.ts, engine.process(c)) for c in work.prefill]
    stream: list[tuple[int, int, list[Any]]] = []
    rng = random.Random(5)
    for cmd in work.commands:
        if (mix == "ice" and isinstance(cmd, NewOrder) and cmd.tif == GTC
                and cmd.quantity >= 4 and rng.random() < 0.10):
            cmd.display_quantity = max(1, cmd.quantity // 4)  # 10% of resting orders
        elif mix == "ice" and isinstance(cmd, NewOrder) and rng.random() < 0.05:
            last = engine.last_prices.get(inst.symbol, cmd.price or 0)
            if last:  # a stop a few ticks beyond the last price (5% of new orders)
                away = rng.randint(1, 3) * inst.tick_size
                stop = last + away if cmd.side == BUY else last - away
                limit = rng.random() < 0.5
                cmd = NewOrder(seq=cmd.seq, ts=cmd.ts, account=cmd.account,
                               symbol=cmd.symbol, side=cmd.side, quantity=cmd.quantity,
                               price=stop if limit else 0,
                               order_type=STOP_LIMIT if limit else STOP,
                               tif=GTC if limit else 2, stop_price=stop)
        stream.append((cmd.seq, cmd.ts, engine.process(cmd)))
    with out.open("wb") as f:
        pickle.dump(([i.symbol for i in work.instruments], prefill, stream), f,
                    protocol=pickle.HIGHEST_PROTOCOL)
    counts = {"icebergs": sum(1 for _s, _t, evs in stream for e in evs
                              if type(e).__name__ == "Accepted" and e.display_quantity),
              "triggered": sum(1 for _s, _t, evs in stream for e in evs
                               if type(e).__name__ == "Triggered")}
    print(f"{len(stream)} commands, {sum(len(e) for _s, _t, e in stream)} events, {counts}")


def run(path: Path, publisher: str) -> None:
    from tickline.stream.bus import Bus

    with path.open("rb") as f:
        symbols, prefill, stream = pickle.load(f)
    if publisher == "none":
        return
    spec = importlib.util.spec_from_file_location("publisher_under_test", publisher)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["publisher_under_test"] = module
    spec.loader.exec_module(module)
    bus = Bus(default_capacity=1 << 24)
    md = module.MarketDataPublisher(bus, symbols)
    md.publish_batch(prefill)
    subs = [bus.subscribe(f"{topic}.{s}") for s in symbols
            for topic in ("trades", "bbo", "depth", "l3")]
    for i in range(0, len(stream), 16):
        md.publish_batch(stream[i:i + 16])
    print(f"messages {md.messages}, subscribers {len(subs)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    p.add_argument("--mix", choices=("plain", "ice"), default="plain")
    p.add_argument("--commands", type=int, default=20_000)
    r = sub.add_parser("run")
    r.add_argument("file", type=Path)
    r.add_argument("--publisher", required=True)
    args = ap.parse_args()
    if args.what == "prepare":
        prepare(args.out, args.mix, args.commands)
    else:
        run(args.file, args.publisher)


if __name__ == "__main__":
    main()
