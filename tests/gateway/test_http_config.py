"""The ``[websocket]`` configuration section: parsed from TOML, validated with ConfigError
naming the field, documented in :mod:`tickline.config`, and wired into the gateway that
``tickline.server.Server`` builds (checked over a real WebSocket)."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

import tickline.config
from tickline.config import ConfigError, FixConfig, ServerSection, WebSocketConfig, load_config

#: HttpGateway's keyword defaults before the limits moved into the configuration.
_PREVIOUS_DEFAULTS = {
    "max_message_bytes": 4096, "max_frame_bytes": 65536, "max_sessions": 256,
    "max_subscriptions": 64, "send_timeout": 5.0, "write_limit": 256 * 1024,
    "send_buffer": None, "bus_capacity": 65536, "max_depth_levels": 4096,
    "trades_capacity": 1000, "bars_capacity": 100, "control_capacity": 256,
    "exec_capacity": 10000, "requests_per_second": 2000.0, "request_burst": 4000,
    "stats_interval": 1.0,
}


def test_defaults_are_the_gateways_previous_defaults() -> None:
    ws = load_config(None).websocket
    assert {k: getattr(ws, k) for k in _PREVIOUS_DEFAULTS} == _PREVIOUS_DEFAULTS
    assert ws == WebSocketConfig()


def test_the_documented_example_loads_and_states_the_defaults(tmp_path: Path) -> None:
    doc = tickline.config.__doc__
    assert doc is not None
    example = textwrap.dedent(doc.split("::\n", 1)[1].split("\nDemo accounts", 1)[0])
    path = tmp_path / "example.toml"
    path.write_text(example)
    config = load_config(path)
    assert config.websocket == WebSocketConfig()  # the example lists the defaults
    assert config.server == ServerSection()  # shards, shard_map, cluster, cluster_shards too
    assert (config.fix.max_heartbeat_seconds, config.fix.sending_time_tolerance) == (
        FixConfig().max_heartbeat_seconds, FixConfig().sending_time_tolerance)
    assert config.limits.max_client_order_id_bytes == 64


def test_values_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[websocket]\nmax_message_bytes = 512\nmax_anonymous = 3\n'
                    'allowed_origins = ["https://dash.example.com", "http://10.0.0.5:8080"]\n'
                    'send_buffer = 65536\n')
    ws = load_config(path).websocket
    assert ws.max_message_bytes == 512 and ws.max_anonymous == 3 and ws.send_buffer == 65536
    assert ws.allowed_origins == ("https://dash.example.com", "http://10.0.0.5:8080")
    assert ws.max_sessions == 256  # the rest keep their defaults


@pytest.mark.parametrize(("line", "field"), [
    ("max_message_bytes = 0", "websocket.max_message_bytes"),
    ("max_sessions = 0", "websocket.max_sessions"),
    ("max_anonymous = -1", "websocket.max_anonymous"),
    ("max_per_address = 0", "websocket.max_per_address"),
    ("send_timeout = 0", "websocket.send_timeout"),
    ("requests_per_second = -1.5", "websocket.requests_per_second"),
    ("login_failures_per_second = 0", "websocket.login_failures_per_second"),
    ("max_frame_bytes = 1000", "websocket.max_frame_bytes"),  # below max_message_bytes
    ("send_buffer = 10", "websocket.send_buffer"),
    ('allowed_origins = ["evil.example"]', "websocket.allowed_origins"),
    ('allowed_origins = ["https://a.example/path"]', "websocket.allowed_origins"),
    ('allowed_origins = ["null"]', "websocket.allowed_origins"),
    ("bogus = 1", "bogus"),
    ("max_sessions = \"many\"", "max_sessions"),
])
def test_bad_values_are_config_errors(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(f"[websocket]\n{line}\n")
    with pytest.raises(ConfigError, match=field):
        load_config(path)


def test_limits_client_order_id_cap_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text("[limits]\nmax_client_order_id_bytes = 0\n")
    with pytest.raises(ConfigError, match=r"limits\.max_client_order_id_bytes"):
        load_config(path)


def test_server_builds_the_gateway_from_the_section(tmp_path: Path) -> None:
    """``[websocket] max_message_bytes = 200`` reaches the running gateway: a 300-character
    request gets ``too_large``, a short one is answered."""
    from tickline.server import Server

    path = tmp_path / "t.toml"
    path.write_text("[websocket]\nmax_message_bytes = 200\nmax_frame_bytes = 1024\n")

    async def scenario() -> None:
        config = load_config(path, port=0, http_port=0, journal_dir=str(tmp_path / "j"),
                             durability="none")
        server = Server(config)
        await server.start()
        try:
            assert server.http is not None and server.http.settings.max_message_bytes == 200
            async with connect(f"ws://127.0.0.1:{server.http_port}/ws") as ws:
                await ws.send(json.dumps({"op": "ping", "id": "x" * 40, "pad": "y" * 260}))
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert got[0]["code"] == "too_large" and "max_message_bytes=200" in \
                    got[0]["message"]
                await ws.send(json.dumps({"op": "ping", "id": 1}))
                assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == \
                    [{"type": "pong", "id": 1}]
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_keyword_overrides_are_validated_too() -> None:
    from tickline.gateway.http import HttpGateway

    class Stub:
        exchange = None

    with pytest.raises(ConfigError, match=r"websocket\.max_sessions"):
        HttpGateway(Stub(), max_sessions=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no_such_limit"):
        HttpGateway(Stub(), no_such_limit=1)  # type: ignore[arg-type]
