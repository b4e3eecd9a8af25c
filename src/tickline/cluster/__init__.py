"""Cluster mode: each shard's input is a NATS JetStream stream, engines and gateways are
separate processes that may run on different machines (issue 12, ``docs/cluster.md``).

* :mod:`~tickline.cluster.shardmap` — the stable symbol → shard map, stream and subject names;
* :mod:`~tickline.cluster.wire` — what travels on NATS (logged commands, engine output);
* :mod:`~tickline.cluster.replica` — one shard's deterministic state machine (no I/O);
* :mod:`~tickline.cluster.nats` — JetStream set-up and the input log;
* :mod:`~tickline.cluster.node` — the engine process (leader or standby);
* :mod:`~tickline.cluster.gateway` — an :class:`~tickline.exchange.Exchange` whose sequencer
  is the input streams, for the binary gateway;
* :mod:`~tickline.cluster.natsserver` — a private ``nats-server`` for tests and benchmarks.

``nats-py`` is an optional dependency (``pip install 'tickline[cluster]'``); only the modules
that talk to NATS import it.
"""

from tickline.cluster.shardmap import CLUSTER_UNAVAILABLE, ShardMap

__all__ = ["CLUSTER_UNAVAILABLE", "ShardMap"]
