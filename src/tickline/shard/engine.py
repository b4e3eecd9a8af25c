"""The matching engine of one shard: globally unique order ids without coordination.

Shard ``K`` of ``N`` numbers its orders ``K+1, K+1+N, K+1+2N, ...`` so an order id names
its shard (``(order_id - 1) % N``) and never collides with another shard's: a cancel by id
alone (cancel-on-disconnect) goes to the right shard, and a session's, a report's or a
client's order ids stay unique exchange-wide. Everything else is the ordinary deterministic
:class:`~tickline.matching.MatchingEngine`, so a shard's journal replays byte for byte.

Trade ids are numbered per shard (unique per symbol, as a symbol lives on one shard).
"""

from __future__ import annotations

from collections.abc import Iterable

from tickline.matching import EngineConfig, Instrument, MatchingEngine

__all__ = ["ShardEngine", "engine_for_shard", "shard_of_order"]

ShardEngine = MatchingEngine
"""A shard's engine is the ordinary engine (not a subclass: the compiled build's
``MatchingEngine`` is a mypyc native class, which an interpreted class cannot extend)."""


def shard_of_order(order_id: int, shards: int) -> int:
    return (order_id - 1) % shards


def engine_for_shard(instruments: Iterable[Instrument], config: EngineConfig | None,
                     shard: int, shards: int) -> MatchingEngine:
    """The engine of shard ``shard`` of ``shards``: ids ``shard+1``, then every ``shards``
    (``MatchingEngine.order_id_step``; a snapshot restore sets ``next_order_id`` only)."""
    engine = MatchingEngine(instruments, config)
    engine.next_order_id = shard + 1
    engine.order_id_step = shards
    return engine
