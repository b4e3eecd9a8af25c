"""Stop cluster components at random moments against a private ``nats-server`` and count the
stops that do not end (issue 12: the failover test's teardown hang).

``gateway`` / ``node``: an in-process leader :class:`~tickline.cluster.node.EngineNode` and a
:class:`~tickline.cluster.gateway.ClusterExchange` are started, left running for a random
0-0.4 s, then the chosen one is stopped first, the other after; ``follower``: a stream reader
(:func:`~tickline.cluster.jetstream.follow`) on an empty stream whose watchdog fires every
millisecond (it asks ``stream_info`` over and over), stopped after 5-30 ms. A stop that has
not ended after ``--bound`` seconds is reported with the stack of every pending task, and the
run ends there. With ``-v`` the stops that had to cancel a task again (a cancel lost in a
request, recovered: :func:`~tickline.cluster.tasks.stop_tasks`) are counted too::

    python benchmarks/cluster_stop_stress.py gateway --rounds 300
    python benchmarks/cluster_stop_stress.py follower --rounds 1000 -v

Before the fix: ``follower`` 19 of 1,000 stops never ended; ``gateway`` stuck at round 164
(the leader watch's cancel lost in its KV request).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import random
import sys
import tempfile
import time

from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.jetstream import connect, ensure_shard, follow
from tickline.cluster.natsserver import NatsServer
from tickline.cluster.node import EngineNode
from tickline.cluster.shardmap import in_stream, in_subject
from tickline.config import default_config


class _Count(logging.Handler):
    """Counts :func:`stop_tasks`' "cancelling ... again" records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.again = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "again" in record.getMessage():
            self.again += 1


def _stacks() -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task!r} cancelling={task.cancelling()}", file=out)
        task.print_stack(file=out, limit=6)
    return out.getvalue()


async def _ended(aw: object, bound: float) -> bool:
    task = asyncio.ensure_future(aw)  # type: ignore[call-overload]
    done, _ = await asyncio.wait({task}, timeout=bound)
    return bool(done)


async def _pair_round(url: str, i: int, first: str, rng: random.Random, bound: float) -> str:
    cfg = default_config()
    node = EngineNode(url, cfg.instruments, cfg.engine_config(), node_id=f"s{i}", lease_s=0.6)
    await node.start()
    ex = ClusterExchange(url, cfg.instruments, lease_s=0.6, unavailable_after_s=30)
    await ex.start()
    await asyncio.sleep(rng.uniform(0, 0.4))
    order = [("gateway", ex), ("node", node)]
    if first == "node":
        order.reverse()
    for name, part in order:
        if not await _ended(part.stop(), bound):
            return name
    return ""


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    counter = _Count()
    if args.verbose:
        tasks_log = logging.getLogger("tickline.cluster.tasks")
        tasks_log.setLevel(logging.DEBUG)
        tasks_log.addHandler(counter)
        shown = logging.StreamHandler()
        shown.setLevel(logging.WARNING)
        tasks_log.addHandler(shown)
        tasks_log.propagate = False
    with tempfile.TemporaryDirectory() as d:
        server = NatsServer(d).start()
        try:
            started = time.monotonic()
            stuck = ""
            nc = await connect(server.url)
            js = nc.jetstream()
            await ensure_shard(js, 0)

            async def handle(items: list[tuple[int, bytes]]) -> None:
                pass

            rounds = 0
            for i in range(args.rounds):
                rounds = i + 1
                if args.what == "follower":
                    f = await follow(js, in_stream(0), in_subject(0), 1, handle,
                                     silence_s=0.001)
                    await asyncio.sleep(rng.uniform(0.005, 0.03))
                    stuck = "" if await _ended(f.stop(), args.bound) else "follower"
                else:
                    stuck = await _pair_round(server.url, i, args.what, rng, args.bound)
                if stuck:
                    print(f"round {i}: the {stuck} stop did not end within {args.bound} s\n"
                          f"{_stacks()}", flush=True)
                    break
            await nc.close()
            print(f"{args.what}: {1 if stuck else 0} stops that did not end in {rounds} "
                  f"rounds, {time.monotonic() - started:.0f} s"
                  + (f"; {counter.again} re-cancels (lost cancels recovered)"
                     if args.verbose else ""))
            return 1 if stuck else 0
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["gateway", "node", "follower"])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--bound", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("-v", "--verbose", action="store_true")
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(main(parser.parse_args())))
