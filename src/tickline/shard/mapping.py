"""Which shard owns which symbol: the stable symbol → shard map of ``tickline serve --shards N``.

The rule is ``zlib.crc32(symbol.encode("utf-8")) % N`` — stable across processes, machines
and Python versions (unlike ``hash()``, which is salted per process) — unless the
configuration pins a symbol to a shard (``[server] shard_map = {SYM = K}``). Every command
about one symbol goes to one shard, so per-symbol order is the sequencer's order.

The map in force is written to ``<data_dir>/shards.json`` on first start. A later start with
a different shard count, or with a symbol moved to another shard, is refused
(:class:`ShardMapChanged`): that shard's journal holds the symbol's orders, and moving them
would silently drop them from recovery. A new symbol may be added (it is appended).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["ShardMap", "ShardMapChanged", "default_shard", "shard_dir"]

MAP_FILE = "shards.json"


class ShardMapChanged(ValueError):
    """The configured shard count or symbol map differs from the one the data was written
    with (``shards.json``)."""


def default_shard(symbol: str, shards: int) -> int:
    """The documented default: ``crc32(symbol utf-8) % shards``."""
    return zlib.crc32(symbol.encode("utf-8")) % shards


def shard_dir(data_dir: Path | str, shard: int) -> Path:
    """Shard ``shard``'s own journal directory: ``<data_dir>/shard-<K>``."""
    return Path(data_dir) / f"shard-{shard}"


class ShardMap:
    """An immutable symbol → shard assignment for ``shards`` shards."""

    def __init__(self, shards: int, symbols: Iterable[str],
                 overrides: Mapping[str, int] | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        overrides = dict(overrides or {})
        symbols = list(symbols)
        for sym, k in overrides.items():
            if sym not in symbols:
                raise ValueError(f"shard_map names unknown symbol {sym!r}")
            if not 0 <= k < shards:
                raise ValueError(f"shard_map: {sym} -> {k} is not in 0..{shards - 1}")
        self.shards = shards
        self.assignment: dict[str, int] = {
            s: overrides.get(s, default_shard(s, shards)) for s in symbols}

    def shard_of(self, symbol: str) -> int | None:
        """The shard owning ``symbol``; None for an unknown symbol."""
        return self.assignment.get(symbol)

    def symbols_of(self, shard: int) -> list[str]:
        return sorted(s for s, k in self.assignment.items() if k == shard)

    def as_json(self) -> dict[str, object]:
        return {"shards": self.shards, "symbols": dict(sorted(self.assignment.items()))}

    def persist(self, data_dir: Path | str) -> None:
        """Check this map against ``<data_dir>/shards.json`` (refusing a change, see the
        module docs) and write it (atomically: temp file, fsync, rename)."""
        data_dir = Path(data_dir)
        path = data_dir / MAP_FILE
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("shards") != self.shards:
                raise ShardMapChanged(
                    f"{data_dir} was written by {old.get('shards')} shard(s), not "
                    f"{self.shards}: start with --shards {old.get('shards')} (resharding "
                    f"existing data is not supported)")
            moved = {s: (k, self.assignment[s]) for s, k in old.get("symbols", {}).items()
                     if s in self.assignment and self.assignment[s] != k}
            if moved:
                detail = ", ".join(f"{s}: {a} -> {b}" for s, (a, b) in sorted(moved.items()))
                raise ShardMapChanged(f"{data_dir}: symbols would move shard ({detail}); "
                                      f"their orders are in their old shard's journal")
            if old == self.as_json():
                return
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.as_json(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
