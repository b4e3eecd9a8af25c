"""CPU per input message of one engine node (``tickline cluster-engine``'s
:class:`~tickline.cluster.node.EngineNode`) following its shard's input stream: what the
node pays per message (nats-py's read path, the stream reader, decoding, the replica) apart
from the rest of the cluster layout.

A private ``nats-server``; the node (``--role standby``: follows and applies, never leads;
``leader``: also publishes the output) runs in its own process; this process publishes
``--messages`` input batches of ``--commands`` exchange-core-mix commands each at ``--rate``
messages per second (after the mix's prefill, once the node is idle again) and reports the
node's utime+stime over the run per message and per command. Wall-clock pacing makes the
natural batches depend on the machine's load: compare trees interleaved, several rounds.
``--callgrind F`` runs the node under ``valgrind --tool=callgrind`` with the counters zeroed
at the start of the load and dumped after it (``F.<n>``: its ``summary`` line is the
instructions of the load window); ``--profile F`` runs cProfile in the node for the load
window only (SIGUSR1 starts it, SIGUSR2 writes ``F``, a ``pstats`` file)::

    python benchmarks/cluster_node_cost.py --commands 1 --rate 1000 --messages 4000
    python benchmarks/cluster_node_cost.py --commands 4 --rate 50 --messages 300 --callgrind /tmp/cg
    python benchmarks/cluster_node_cost.py --role leader --commands 16 --profile /tmp/leader.prof
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")

_NODE = r'''
import asyncio, cProfile, signal, sys, time
from tickline.bench.workload import exchange_core_mix
from tickline.cluster.node import EngineNode
from tickline.server import run_event_loop

async def main() -> None:
    work = exchange_core_mix(1000, seed=7)
    node = EngineNode(sys.argv[1], work.instruments, standby_only=sys.argv[2] == "standby",
                      node_id=sys.argv[2])
    await node.start()
    if sys.argv[3]:  # --profile: the load window only
        prof = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, prof.enable)
        loop.add_signal_handler(signal.SIGUSR2,
                                lambda: (prof.disable(), prof.dump_stats(sys.argv[3])))
    print("READY", flush=True)
    await asyncio.Event().wait()

run_event_loop(main())
'''


def _spawn(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def _callgrind(pid: int, flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=False, capture_output=True)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _run(args: argparse.Namespace) -> None:
    from tickline.bench.workload import exchange_core_mix
    from tickline.cluster.jetstream import connect, ensure_shard
    from tickline.cluster.natsserver import NatsServer
    from tickline.cluster.shardmap import in_subject
    from tickline.cluster.wire import Logged, encode

    k, m = args.commands, args.messages
    work = exchange_core_mix(max(m * k, 1000), seed=7)
    cmds = work.commands
    subject = in_subject(0)
    with tempfile.TemporaryDirectory(prefix="tickline-node-cost-") as d, \
            NatsServer(Path(d) / "nats") as nats:
        nc = await connect(nats.url)
        await ensure_shard(nc.jetstream(), 0)
        ticket = 0
        for i in range(0, len(work.prefill), 200):
            ticket += 1
            await nc.publish(subject, encode(Logged("bench", ticket * 1000, time.time_ns(),
                                                    work.prefill[i:i + 200])),
                             headers={"Nats-Msg-Id": f"bench:{ticket}"})
        await nc.flush()
        vg = (["valgrind", "--tool=callgrind", f"--callgrind-out-file={args.callgrind}"]
              if args.callgrind else [])
        node = _spawn([*vg, sys.executable, "-c", _NODE, nats.url, args.role, args.profile])
        try:
            assert node.stdout is not None
            node.stdout.readline()
            idle = 0.3 if args.callgrind else 0.03
            while True:  # caught up with the prefill: idle for a second
                a = _cpu_s(node.pid)
                await asyncio.sleep(1.0)
                if _cpu_s(node.pid) - a < idle:
                    break
            if args.callgrind:
                _callgrind(node.pid, "-z")
            if args.profile:
                node.send_signal(signal.SIGUSR1)
            before = _cpu_s(node.pid)
            start = time.monotonic()
            for n in range(m):
                first = (n * k) % (len(cmds) - k)
                ticket += 1
                await nc.publish(subject, encode(Logged("bench", ticket * 1000,
                                                        time.time_ns(),
                                                        cmds[first:first + k])),
                                 headers={"Nats-Msg-Id": f"bench:{ticket}"})
                delay = start + (n + 1) / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await nc.flush()
            await asyncio.sleep(1.5)
            if args.callgrind:
                _callgrind(node.pid, "-d")
            if args.profile:
                node.send_signal(signal.SIGUSR2)
                await asyncio.sleep(0.5)
            cpu = _cpu_s(node.pid) - before
            print(f"{args.role}, {m} messages of {k} commands at {args.rate:g}/s: "
                  f"{cpu / m * 1e6:,.0f} µs per message, {cpu / (m * k) * 1e6:,.1f} µs per "
                  f"command ({cpu:.2f} s CPU, {time.monotonic() - start:.1f} s, load "
                  f"{os.getloadavg()[0]:.1f})", flush=True)
        finally:
            node.terminate()
            node.wait()
            await nc.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=4, help="commands per input message")
    ap.add_argument("--rate", type=float, default=1000.0, help="input messages per second")
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--role", choices=["standby", "leader"], default="standby")
    ap.add_argument("--callgrind", default="", help="callgrind output file of the node")
    ap.add_argument("--profile", default="", help="cProfile stats file of the node")
    asyncio.run(_run(ap.parse_args()))


if __name__ == "__main__":
    main()
