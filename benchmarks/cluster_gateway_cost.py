"""CPU per command of the cluster gateway's own work, without NATS or sockets: for A/B
comparisons of :class:`~tickline.cluster.gateway.ClusterExchange` changes.

The exchange-core mix (``tickline.bench.workload``) goes through, in batches of ``--batch``
commands (one event-loop turn of a busy gateway): ``submit_many`` (routing, availability,
waits), the publisher's batch encoding (:meth:`ClusterExchange._make_batches`), a
:class:`~tickline.cluster.replica.Replica` applying the decoded batch (the engine's work,
timed apart), the encoded :class:`~tickline.cluster.wire.Output`, and the gateway's
``_on_output`` (decode, market data, reports, history, routing, release, replies to a
no-op). Prints nanoseconds per command of the gateway part and of the replica part
(``time.process_time_ns``)::

    python benchmarks/cluster_gateway_cost.py --commands 50000 --batch 40

Instructions (deterministic, for two trees or two builds): ``prepare`` runs the replica
once and stores each batch's commands with the engine's encoded output (the gateway id is
fixed, so the tickets match); ``measure`` runs only the gateway's part on them under
``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``, the loaded batches frozen out of the
collector) with all ``N`` commands and with the first :data:`BASE`, for the build in use
and for the pure-Python modules, and prints (total(N) - total(BASE)) / (N - BASE)::

    python benchmarks/cluster_gateway_cost.py prepare /tmp/cgw.pkl --commands 20000 --batch 40
    python benchmarks/cluster_gateway_cost.py measure /tmp/cgw.pkl
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from types import SimpleNamespace
from typing import Any

import callgrind

BASE = 2_000
"""Commands of the baseline run (subtracted): start-up, prefill and warm-up cancel."""

_GATEWAY_ID = "bench0000000"


def _exchange(instruments: Any) -> Any:
    from tickline.cluster.gateway import ClusterExchange

    ex = ClusterExchange("nats://unused", instruments)
    ex.gateway_id = _GATEWAY_ID
    ex.nc = SimpleNamespace(is_connected=True, max_payload=1 << 20)
    ex._leader_seen = [float("inf")]  # a leader is always there
    return ex


def timed(commands: int, batch: int) -> None:
    """Wall-clock (process CPU) nanoseconds per command of the gateway and the replica."""
    from tickline.bench.workload import exchange_core_mix
    from tickline.cluster.replica import Replica
    from tickline.cluster.wire import Output, decode_logged, encode

    work = exchange_core_mix(commands, seed=7)
    ex = _exchange(work.instruments)
    replica = Replica(work.instruments)
    replies = 0

    def reply(_cmd: Any, _events: Any, _reports: Any) -> None:
        nonlocal replies
        replies += 1

    def one_batch(cmds: list[Any], in_seq: int, spent: list[int]) -> None:
        t0 = time.process_time_ns()
        ex.submit_many(cmds, reply)
        waits, ex._to_publish = ex._to_publish, []
        batches = ex._make_batches(waits)
        t1 = time.process_time_ns()
        done = []
        for b in batches:
            in_seq += 1
            done.extend(replica.apply(in_seq, decode_logged(b.payload)))
        out = encode(Output(1, 0, done))
        t2 = time.process_time_ns()
        ex._on_output(0, out)
        t3 = time.process_time_ns()
        spent[0] += (t1 - t0) + (t3 - t2)
        spent[1] += t2 - t1

    warm = [0, 0]
    for i in range(0, len(work.prefill), batch):
        one_batch(work.prefill[i:i + batch], replica.in_seq, warm)
    spent = [0, 0]
    n = len(work.commands)
    for i in range(0, n, batch):
        one_batch(work.commands[i:i + batch], replica.in_seq, spent)
    assert replies == len(work.prefill) + n, (replies, n)
    print(f"{n} commands, batches of {batch}: gateway {spent[0] / n:,.0f} ns/command, "
          f"replica {spent[1] / n:,.0f} ns/command")


def prepare(path: str, commands: int, batch: int) -> None:
    """Store ``[(commands, output bytes)]`` per batch (prefill first) and the instruments."""
    from tickline.bench.workload import exchange_core_mix
    from tickline.cluster.replica import Replica
    from tickline.cluster.wire import Logged, Output, decode_logged, encode

    work = exchange_core_mix(commands, seed=7)
    replica = Replica(work.instruments)
    batches: list[tuple[list[Any], bytes]] = []
    ticket = 0
    cmds = work.prefill + work.commands
    for i in range(0, len(cmds), batch):
        part = cmds[i:i + batch]
        payload = encode(Logged(_GATEWAY_ID, ticket + 1, 1_000_000 + i, part))
        ticket += len(part)
        done = replica.apply(replica.in_seq + 1, decode_logged(payload))
        batches.append((part, encode(Output(1, 0, done))))
    with open(path, "wb") as f:
        pickle.dump({"instruments": work.instruments, "prefill": len(work.prefill),
                     "batch": batch, "batches": batches}, f,
                    protocol=pickle.HIGHEST_PROTOCOL)


def run(path: str, n: int) -> None:
    """The gateway's part for the prefill and the first ``n`` commands (under valgrind)."""
    with open(path, "rb") as f:
        data = pickle.load(f)  # our own file
    ex = _exchange(data["instruments"])
    take = (data["prefill"] + n) // data["batch"]
    batches = data["batches"][:take]
    replies = 0

    def reply(_cmd: Any, _events: Any, _reports: Any) -> None:
        nonlocal replies
        replies += 1

    gc.collect()
    gc.freeze()  # the loaded batches out of every later collection (see exchange_callgrind)
    for cmds, out in batches:
        ex.submit_many(cmds, reply)
        waits, ex._to_publish = ex._to_publish, []
        ex._make_batches(waits)
        ex._on_output(0, out)
    assert replies == sum(len(c) for c, _ in batches), replies


def _instructions(path: str, n: int, pure: bool) -> int:
    return callgrind.instructions(__file__, ["run", path, str(n)], pure=pure)


def measure(path: str, builds: str) -> None:
    from tickline._build import build_info

    with open(path, "rb") as f:
        data = pickle.load(f)
    batches = data["batches"]
    n = sum(len(c) for c, _ in batches) - data["prefill"]
    per_run = (sum(len(c) for c, _ in batches)
               - sum(len(c) for c, _ in batches[:(data["prefill"] + BASE) // data["batch"]]))
    todo = {"both": [False, True], "compiled": [False], "pure": [True]}[builds]
    if build_info()["build"] == "pure":
        todo = [True]
    for pure in todo:
        full = _instructions(path, n, pure)
        base = _instructions(path, BASE, pure)
        name = "pure" if pure else "compiled"
        print(f"{name:9} gateway {(full - base) / per_run:9,.0f} instructions/command "
              f"(batches of {data['batch']}, {per_run} commands apart)", flush=True)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        ap = argparse.ArgumentParser()
        ap.add_argument("--commands", type=int, default=50_000)
        ap.add_argument("--batch", type=int, default=40)
        args = ap.parse_args()
        timed(args.commands, args.batch)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("path")
    p.add_argument("--commands", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=40)
    r = sub.add_parser("run")
    r.add_argument("path")
    r.add_argument("n", type=int)
    m = sub.add_parser("measure")
    m.add_argument("path")
    m.add_argument("--builds", choices=("both", "compiled", "pure"), default="both")
    args = parser.parse_args()
    if args.what == "prepare":
        prepare(args.path, args.commands, args.batch)
    elif args.what == "run":
        run(args.path, args.n)
    else:
        measure(args.path, args.builds)


if __name__ == "__main__":
    main()
