"""Cluster mode's configuration: ``cluster_shards`` is checked when the file is loaded (not
when the gateway starts), and ``shard_map`` pins are cluster shard indexes, passed to the
gateway's :class:`~tickline.cluster.shardmap.ShardMap` (real nats-server and engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.cluster.procs import EngineProc
from tickline.client import Client
from tickline.cluster.gateway import ClusterExchange
from tickline.cluster.natsserver import NatsServer
from tickline.config import ConfigError, load_config
from tickline.server import Server


def _write(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text("[server]\nport = 0\nhttp_port = 0\n" + server)
    return path


def test_cluster_shards_below_one_is_refused_at_load(tmp_path: Path) -> None:
    for n in (0, -1):
        with pytest.raises(ConfigError, match="cluster_shards must be >= 1"):
            load_config(_write(tmp_path, f'cluster = "nats://127.0.0.1:1"\ncluster_shards = {n}\n'))


def test_shard_map_indexes_are_cluster_shards(tmp_path: Path) -> None:
    url = 'cluster = "nats://127.0.0.1:1"\n'
    cfg = load_config(_write(tmp_path, url + "cluster_shards = 2\nshard_map = {AAPL = 1}\n"))
    assert cfg.server.shard_map == {"AAPL": 1}
    with pytest.raises(ConfigError, match=r"AAPL = 2 is not a shard index \(0..1, "
                                          r"server.cluster_shards = 2\)"):
        load_config(_write(tmp_path, url + "cluster_shards = 2\nshard_map = {AAPL = 2}\n"))


def test_a_pinned_symbol_goes_to_its_shard(nats_server: NatsServer, tmp_path: Path) -> None:
    """AAPL hashes to shard 0 of 2 (crc32); pinned to 1, its orders are logged on shard 1's
    input stream and answered by shard 1's engine."""
    path = _write(tmp_path, f'cluster = "{nats_server.url}"\ncluster_shards = 2\n'
                            f'shard_map = {{AAPL = 1}}\njournal_dir = "{tmp_path / "j"}"\n')
    cfg = load_config(path)
    engines = [EngineProc(nats_server.url, tmp_path / f"e{k}.log", shard=k) for k in (0, 1)]
    try:
        async def main() -> None:
            server = Server(cfg)
            assert isinstance(server.exchange, ClusterExchange)
            assert server.exchange.map.shard_of("AAPL") == 1
            await server.start()
            try:
                client = await Client.connect("127.0.0.1", server.port, "alice-key")
                ack = await client.new_order("AAPL", "buy", 1, "1.00")
                assert ack.status == "new"
                assert ack.order_id >> 40 == 1  # shard 1's block of order ids
                await client.logout()
                js = server.exchange.js
                assert js is not None
                assert (await js.stream_info("TL_IN_1")).state.messages == 1
                assert (await js.stream_info("TL_IN_0")).state.messages == 0
            finally:
                await server.stop()

        asyncio.run(main())
    finally:
        for e in engines:
            e.close()


def test_batches_in_flight_is_configured_and_checked_at_load(tmp_path: Path) -> None:
    """``[server] cluster_batches_in_flight`` reaches the gateway (0: a message per batch);
    a negative window is refused when the file is loaded."""
    url = 'cluster = "nats://127.0.0.1:1"\n'
    assert load_config(_write(tmp_path, url)).server.cluster_batches_in_flight == 4
    for n in (0, 9):
        cfg = load_config(_write(tmp_path, url + f"cluster_batches_in_flight = {n}\n"))
        exchange = Server(cfg).exchange
        assert isinstance(exchange, ClusterExchange) and exchange.batches_in_flight == n
    with pytest.raises(ConfigError, match="cluster_batches_in_flight must be >= 0, got -1"):
        load_config(_write(tmp_path, url + "cluster_batches_in_flight = -1\n"))
