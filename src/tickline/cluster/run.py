"""``tickline cluster-engine``: one shard's :class:`~tickline.cluster.node.EngineNode` until
SIGTERM/SIGINT (then it gives up its leadership at once, so a standby takes over without
waiting for the lease to expire). Prints ``READY node=... leader=...`` once following.

Once following, the start-up heap is frozen (:func:`tickline.core.gctune.frozen_heap`, as
``tickline serve`` does with ``[server] gc_freeze``): measured (``benchmarks/
cluster_stages.py``, 10,000/s), a node's full collection walked the modules, nats-py and
the configuration every time — 43-69 ms each, one per node per run, the standby's within a
second of the load starting — against a few ms frozen."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from tickline.cluster.node import EngineNode
from tickline.config import ServerConfig
from tickline.core.gctune import frozen_heap

__all__ = ["run_engine"]


async def run_engine(cfg: ServerConfig, url: str, *, shard: int = 0, lease_s: float = 1.0,
                     snapshot_every: int = 100_000, node_id: str | None = None,
                     replicas: int = 1, stop: asyncio.Event | None = None) -> int:
    """Run the node until SIGTERM/SIGINT (or ``stop`` is set: tests); the start-up heap
    stays frozen while it runs when ``cfg.server.gc_freeze`` (the default)."""
    node = EngineNode(url, cfg.instruments, cfg.engine_config(), shard=shard, node_id=node_id,
                      lease_s=lease_s, snapshot_every=snapshot_every, replicas=replicas)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    await node.start()
    with contextlib.ExitStack() as gc_settings:
        if cfg.server.gc_freeze:
            gc_settings.enter_context(frozen_heap())
        print(f"READY node={node.node_id} shard={shard} leader={node.leader} "
              f"seq={node.replica.seq}", flush=True)
        await stop.wait()
    await node.stop()
    print(f"STOPPED node={node.node_id} seq={node.replica.seq} digest={node.replica.digest()}",
          file=sys.stderr, flush=True)
    return 0
