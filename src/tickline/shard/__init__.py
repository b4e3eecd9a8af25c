"""tickline.shard: ``tickline serve --shards N`` — one engine process per shard on one machine.

:class:`ShardedExchange` (gateway side: sequencer, routing, report building) feeds the shard
processes (:mod:`.worker`: match + journal) over shared-memory rings (:mod:`.channel`);
:class:`ShardMap` is the stable symbol → shard map (``shards.json``). See ``docs/shards.md``.
"""

from tickline.shard.exchange import ShardedExchange, ShardFailed
from tickline.shard.mapping import ShardMap, ShardMapChanged, default_shard

__all__ = ["ShardFailed", "ShardMap", "ShardMapChanged", "ShardedExchange", "default_shard"]
