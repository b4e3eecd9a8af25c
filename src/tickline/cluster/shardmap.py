"""Which shard owns a symbol, and the NATS names of each shard's streams and subjects.

The map is ``crc32(symbol) % shards`` (zlib's CRC-32 of the UTF-8 symbol), the same map the
one-machine ``--shards`` mode documents, so a symbol keeps its shard across restarts and
across machines. ``overrides`` pins chosen symbols to a shard (a hot symbol alone).

Order ids must be unique across shards, because a session names an order by id alone: shard
``k``'s engine numbers its orders and trades from ``k * ID_SPACE + 1``
(:meth:`ShardMap.id_base`), so the owning shard of an order id is ``order_id // ID_SPACE``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from tickline.matching import (
    Cancel,
    CancelOrders,
    Command,
    MassCancel,
    NewOrder,
    Replace,
    SetTradingStatus,
)

__all__ = ["CLUSTER_UNAVAILABLE", "ID_SPACE", "ShardMap", "in_stream", "in_subject",
           "out_stream", "out_subject"]

CLUSTER_UNAVAILABLE = 412
"""Reject code (``RejectReason.CLUSTER_UNAVAILABLE``): no engine leader can take the command
now (NATS unreachable, no leader for the shard); nothing was logged, nothing changed."""

ID_SPACE = 1 << 40
"""Each shard's block of order ids and trade ids."""

PREFIX = "TL"


def in_stream(shard: int) -> str:
    """The JetStream stream holding shard ``shard``'s input log."""
    return f"{PREFIX}_IN_{shard}"


def in_subject(shard: int) -> str:
    return f"tickline.in.{shard}"


def out_stream(shard: int) -> str:
    """The stream holding shard ``shard``'s engine output (fenced writes, gateways read it)."""
    return f"{PREFIX}_OUT_{shard}"


def out_subject(shard: int) -> str:
    return f"tickline.out.{shard}"


class ShardMap:
    """``shards`` shards; ``overrides``: symbol → shard for symbols placed by hand."""

    def __init__(self, shards: int = 1, overrides: Mapping[str, int] | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        self.shards = shards
        self.overrides = dict(overrides or {})
        for sym, k in self.overrides.items():
            if not 0 <= k < shards:
                raise ValueError(f"override {sym!r} -> {k} outside 0..{shards - 1}")
        self._cache: dict[str, int] = {}

    def shard_of(self, symbol: str) -> int:
        """The shard that owns ``symbol``."""
        k = self._cache.get(symbol)
        if k is None:
            k = self.overrides.get(symbol)
            if k is None:
                k = zlib.crc32(symbol.encode()) % self.shards
            self._cache[symbol] = k
        return k

    @staticmethod
    def id_base(shard: int) -> int:
        """The first order id and trade id of ``shard``'s engine, minus one."""
        return shard * ID_SPACE

    def shard_of_order(self, order_id: int) -> int:
        return min(order_id // ID_SPACE, self.shards - 1)

    def shard_of_command(self, cmd: Command) -> int | None:
        """The one shard ``cmd`` goes to; None for a command that spans shards (an account
        status change, a ``CancelOrders`` naming orders of several shards) when there are
        several — :meth:`split` divides those."""
        if self.shards == 1:
            return 0
        kind = type(cmd)
        if kind is NewOrder or kind is Cancel or kind is Replace or kind is SetTradingStatus:
            return self.shard_of(cmd.symbol)  # type: ignore[union-attr]
        if kind is MassCancel and cmd.symbol:  # type: ignore[union-attr]
            return self.shard_of(cmd.symbol)  # type: ignore[union-attr]
        if kind is CancelOrders:
            owners = {self.shard_of_order(o) for o in cmd.order_ids}  # type: ignore[union-attr]
            if len(owners) == 1:
                return owners.pop()
        return None

    def split(self, cmd: CancelOrders) -> dict[int, CancelOrders]:
        """A ``CancelOrders`` divided by the shard of each order id."""
        by: dict[int, list[int]] = {}
        for oid in cmd.order_ids:
            by.setdefault(self.shard_of_order(oid), []).append(oid)
        return {k: CancelOrders(account=cmd.account, order_ids=tuple(ids), reason=cmd.reason)
                for k, ids in sorted(by.items())}
