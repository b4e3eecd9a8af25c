"""The symbol → shard map: stable (crc32, documented values), overridable, persisted, and a
changed layout over existing data refused."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickline.config import ConfigError, load_config
from tickline.shard import ShardMap, ShardMapChanged, default_shard


def test_documented_values() -> None:
    # crc32 is the same on every machine and Python version: these are the README's values
    assert [default_shard(s, 2) for s in ("AAPL", "MSFT", "BTC-USD")] == [0, 1, 0]
    assert default_shard("AAPL", 2) == zlib.crc32(b"AAPL") % 2


@given(st.text(min_size=1, max_size=12), st.integers(1, 16))
def test_every_symbol_has_one_shard_in_range(symbol: str, n: int) -> None:
    m = ShardMap(n, [symbol])
    assert m.shard_of(symbol) == default_shard(symbol, n)
    assert 0 <= m.shard_of(symbol) < n  # type: ignore[operator]
    assert ShardMap(n, [symbol]).assignment == m.assignment  # deterministic


def test_override_and_bad_overrides() -> None:
    m = ShardMap(2, ["AAPL", "MSFT"], {"AAPL": 1})
    assert m.assignment == {"AAPL": 1, "MSFT": 1}
    assert m.symbols_of(0) == []
    with pytest.raises(ValueError, match="unknown symbol"):
        ShardMap(2, ["AAPL"], {"XYZ": 0})
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        ShardMap(2, ["AAPL"], {"AAPL": 2})


def test_persist_refuses_other_shard_count_and_moves(tmp_path: Path) -> None:
    ShardMap(2, ["AAPL", "MSFT"]).persist(tmp_path)
    saved = json.loads((tmp_path / "shards.json").read_text())
    assert saved == {"shards": 2, "symbols": {"AAPL": 0, "MSFT": 1}}
    ShardMap(2, ["AAPL", "MSFT"]).persist(tmp_path)  # same layout: fine
    with pytest.raises(ShardMapChanged, match="written by 2 shard"):
        ShardMap(3, ["AAPL", "MSFT"]).persist(tmp_path)
    with pytest.raises(ShardMapChanged, match="AAPL: 0 -> 1"):
        ShardMap(2, ["AAPL", "MSFT"], {"AAPL": 1}).persist(tmp_path)
    assert json.loads((tmp_path / "shards.json").read_text()) == saved  # unchanged
    ShardMap(2, ["AAPL", "MSFT", "BTC-USD"]).persist(tmp_path)  # a new symbol is added
    assert json.loads((tmp_path / "shards.json").read_text())["symbols"]["BTC-USD"] == 0


def test_config_checks_the_shard_map(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nshards = 2\nshard_map = {AAPL = 1}\n')
    assert load_config(cfg).server.shard_map == {"AAPL": 1}
    cfg.write_text('[server]\nshards = 2\nshard_map = {AAPL = 2}\n')
    with pytest.raises(ConfigError, match="not a shard index"):
        load_config(cfg)
    cfg.write_text('[server]\nshards = 2\nshard_map = {NOPE = 0}\n')
    with pytest.raises(ConfigError, match="unknown symbol"):
        load_config(cfg)
