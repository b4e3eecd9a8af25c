"""A fixed matching workload for instruction counts (callgrind), as docs/benchmarks.md
("Engine state for a compiler ...") uses it.

    python benchmarks/engine_callgrind.py gen 40000 w40k.pkl
    PYTHONHASHSEED=0 PYTHONPATH=$TREE/src valgrind --tool=callgrind \\
        --callgrind-out-file=x.out python benchmarks/engine_callgrind.py run w40k.pkl N one

``gen`` pickles ``exchange_core_mix(N, seed=1)`` (instruments, prefill, commands), so every
tree under test runs the very same commands. ``run`` prefills an engine, then applies the
first ``N`` commands with ``process`` (``one``) or one ``process_many`` (``many``); ``risk``
as a fifth argument gives every account of the workload generous limits (all four, none
reached). Instructions per command = (total with ``N`` - total with 0) / ``N``.
"""

from __future__ import annotations

import pickle
import sys

from tickline.matching import EngineConfig, MatchingEngine, RiskLimits

GENEROUS = RiskLimits(max_order_quantity=10**12, max_order_notional=10**18,
                      max_open_orders=10**9, max_position=10**15)


def gen(n: int, path: str) -> None:
    from tickline.bench.workload import exchange_core_mix
    w = exchange_core_mix(n, seed=1)
    with open(path, "wb") as f:
        pickle.dump((w.instruments, w.prefill, w.commands), f)


def run(path: str, n: int, mode: str, risk: bool) -> None:
    with open(path, "rb") as f:
        instruments, prefill, commands = pickle.load(f)  # our own file
    config = EngineConfig()
    if risk:
        accounts = {getattr(c, "account", 0) for c in [*prefill, *commands]} - {0}
        config = EngineConfig(account_limits=dict.fromkeys(sorted(accounts), GENEROUS))
    engine = MatchingEngine(instruments, config)
    for cmd in prefill:
        engine.process(cmd)
    todo = commands[:n]
    if mode == "many":
        engine.process_many(todo)
    else:
        process = engine.process
        for cmd in todo:
            process(cmd)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    else:
        run(sys.argv[2], int(sys.argv[3]), sys.argv[4],
            len(sys.argv) > 5 and sys.argv[5] == "risk")
