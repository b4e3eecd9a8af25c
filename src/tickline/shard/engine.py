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
from typing import Any

from tickline.matching import EngineConfig, Instrument, MatchingEngine

__all__ = ["ShardEngine", "shard_of_order"]

_NEXT_ID: Any = MatchingEngine.__dict__["next_order_id"]  # the base class's slot


def shard_of_order(order_id: int, shards: int) -> int:
    return (order_id - 1) % shards


class ShardEngine(MatchingEngine):
    """A :class:`MatchingEngine` whose order ids step by the shard count."""

    __slots__ = ()
    _stride: int = 1

    def __init__(self, instruments: Iterable[Instrument], config: EngineConfig | None = None,
                 *, shard: int = 0, shards: int = 1) -> None:
        super().__init__(instruments, config)
        # per-instance stride would need a slot (and break __class__ compatibility):
        # one process runs one shard, so a subclass per shard count is made on demand
        _NEXT_ID.__set__(self, shard + 1)

    @classmethod
    def for_shard(cls, instruments: Iterable[Instrument], config: EngineConfig | None,
                  shard: int, shards: int) -> ShardEngine:
        kind = _strided(shards)
        return kind(instruments, config, shard=shard, shards=shards)

    @property
    def next_order_id(self) -> int:
        return int(_NEXT_ID.__get__(self))

    @next_order_id.setter
    def next_order_id(self, value: int) -> None:
        try:
            current = _NEXT_ID.__get__(self)
        except AttributeError:  # MatchingEngine.__init__'s first assignment
            _NEXT_ID.__set__(self, value)
            return
        # the engine takes ``order_id = next_order_id`` and stores ``order_id + 1``: step
        # by the stride instead; any other assignment (a snapshot restore) is kept as is
        _NEXT_ID.__set__(self, current + self._stride if value == current + 1 else value)


_KINDS: dict[int, type[ShardEngine]] = {}


def _strided(shards: int) -> type[ShardEngine]:
    kind = _KINDS.get(shards)
    if kind is None:
        kind = type(f"ShardEngine{shards}", (ShardEngine,), {"__slots__": (), "_stride": shards})
        _KINDS[shards] = kind
    return kind
