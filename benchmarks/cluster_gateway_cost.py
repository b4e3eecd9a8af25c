"""CPU per command of the cluster gateway's own work, without NATS or sockets: for A/B
comparisons of :class:`~tickline.cluster.gateway.ClusterExchange` changes.

The exchange-core mix (``tickline.bench.workload``) goes through, in batches of ``--batch``
commands (one event-loop turn of a busy gateway): ``submit_many`` (routing, availability,
waits), the publisher's batch encoding (:meth:`ClusterExchange._make_batches`), a
:class:`~tickline.cluster.replica.Replica` applying the decoded batch (the engine's work,
timed apart), the encoded :class:`~tickline.cluster.wire.Output`, and the gateway's
``_on_output`` (decode, market data, reports, history, routing, release, replies to a
no-op). Prints nanoseconds per command of the gateway part and of the replica part
(``time.process_time_ns``); under ``valgrind --tool=callgrind`` compare instruction counts
of two trees instead (deterministic)::

    python benchmarks/cluster_gateway_cost.py --commands 50000 --batch 40
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=40)
    args = ap.parse_args()

    from tickline.bench.workload import exchange_core_mix
    from tickline.cluster.gateway import ClusterExchange
    from tickline.cluster.replica import Replica
    from tickline.cluster.wire import Output, decode_logged, encode

    work = exchange_core_mix(args.commands, seed=7)
    ex = ClusterExchange("nats://unused", work.instruments)
    ex.nc = SimpleNamespace(is_connected=True, max_payload=1 << 20)  # type: ignore[assignment]
    ex._leader_seen = [float("inf")]  # a leader is always there
    replica = Replica(work.instruments)
    replies = 0

    def reply(_cmd: Any, _events: Any, _reports: Any) -> None:
        nonlocal replies
        replies += 1

    def one_batch(cmds: list[Any], in_seq: int, timed: list[int]) -> None:
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
        timed[0] += (t1 - t0) + (t3 - t2)
        timed[1] += t2 - t1

    warm = [0, 0]
    seq = 0
    for i in range(0, len(work.prefill), args.batch):
        one_batch(work.prefill[i:i + args.batch], seq, warm)
        seq = replica.in_seq
    timed = [0, 0]
    n = len(work.commands)
    for i in range(0, n, args.batch):
        one_batch(work.commands[i:i + args.batch], replica.in_seq, timed)
    assert replies == len(work.prefill) + n, (replies, n)
    print(f"{n} commands, batches of {args.batch}: gateway {timed[0] / n:,.0f} ns/command, "
          f"replica {timed[1] / n:,.0f} ns/command")


if __name__ == "__main__":
    main()
