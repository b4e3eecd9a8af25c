"""``tickline cluster-engine``: one shard's :class:`~tickline.cluster.node.EngineNode` until
SIGTERM/SIGINT (then it gives up its leadership at once, so a standby takes over without
waiting for the lease to expire). Prints ``READY node=... leader=...`` once following."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from tickline.cluster.node import EngineNode
from tickline.config import ServerConfig

__all__ = ["run_engine"]


async def run_engine(cfg: ServerConfig, url: str, *, shard: int = 0, lease_s: float = 1.0,
                     snapshot_every: int = 100_000, node_id: str | None = None,
                     replicas: int = 1) -> int:
    node = EngineNode(url, cfg.instruments, cfg.engine_config(), shard=shard, node_id=node_id,
                      lease_s=lease_s, snapshot_every=snapshot_every, replicas=replicas)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"READY node={node.node_id} shard={shard} leader={node.leader} "
          f"seq={node.replica.seq}", flush=True)
    await stop.wait()
    await node.stop()
    print(f"STOPPED node={node.node_id} seq={node.replica.seq} digest={node.replica.digest()}",
          file=sys.stderr, flush=True)
    return 0
