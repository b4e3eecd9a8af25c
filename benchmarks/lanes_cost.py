"""What the exchange's priority lanes and deadlines cost per command, in instructions.

Run under ``valgrind --tool=callgrind`` (instruction counts repeat on a noisy machine) with
N = 0 and N = 8000 and subtract (start-up and workload generation cancel out)::

    python benchmarks/lanes_cost.py order /tmp/order.json          # once, not under valgrind
    valgrind --tool=callgrind python benchmarks/lanes_cost.py run /tmp/order.json 8000 two
    # modes: two (lanes and default deadlines), one (one lane, deadlines off),
    # base (the Exchange of another checkout: PYTHONPATH=<checkout>/src, no new options)

The workload is 8,000 commands of the exchange-core mix, submitted in reads of 256 commands
(``submit_many``) and pumped after each, without a journal. Lanes reorder commands (cancels
first), and a reordered mix does different engine work; so ``order`` records the order in
which the two-lane exchange sequences it, and every mode is fed the commands in that order:
all modes then match exactly the same commands in the same order.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tickline.bench.workload import exchange_core_mix
from tickline.exchange import Exchange

CHUNK = 256


def record_order(path: str, n: int = 8000) -> None:
    w = exchange_core_mix(n, seed=3)
    ex = Exchange(w.instruments)
    for c in w.prefill:
        ex.submit(c)
    ex.pump()
    index = {id(c): i for i, c in enumerate(w.commands)}
    order: list[int] = []

    def sequenced(cmd: Any, _e: Any, _r: Any) -> None:  # replies come in sequence order
        order.append(index[id(cmd)])

    for i in range(0, n, CHUNK):
        ex.submit_many(w.commands[i:i + CHUNK], sequenced)
        ex.pump()
    assert sorted(order) == list(range(n))
    with open(path, "w") as f:
        json.dump(order, f)
    print(f"{sum(a != b for a, b in enumerate(order))} of {n} positions moved by the lanes; "
          f"{ex.held_back} cancels held back", file=sys.stderr)


def run(path: str, n: int, mode: str) -> None:
    with open(path) as f:
        order = json.load(f)
    w = exchange_core_mix(len(order), seed=3)
    kw: dict[str, Any] = {}
    if mode == "one":
        kw = {"lanes": False, "max_queue_ms": 0, "match_deadline_ms": 0,
              "publish_deadline_ms": 0}
    ex = Exchange(w.instruments, **kw)
    for c in w.prefill:
        ex.submit(c)
    ex.pump()
    cmds = [w.commands[i] for i in order][:n]
    for i in range(0, len(cmds), CHUNK):
        ex.submit_many(cmds[i:i + CHUNK])
        ex.pump()
    print(mode, n, ex.commands, file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "order":
        record_order(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4])
