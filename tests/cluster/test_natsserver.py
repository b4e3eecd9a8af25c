"""The private nats-server fixture: its own port and store, JetStream on, stopped after."""

from __future__ import annotations

import asyncio
import socket

from tickline.cluster.jetstream import connect
from tickline.cluster.natsserver import NatsServer


def test_server_has_jetstream_on_its_own_port(nats_server: NatsServer) -> None:
    assert nats_server.port != 4222

    async def main() -> bool:
        nc = await connect(nats_server.url)
        try:
            info = await nc.jetstream().account_info()
            return info is not None
        finally:
            await nc.close()

    assert asyncio.run(main())
    assert (nats_server.store_dir / "jetstream").is_dir()


def test_stop_frees_the_port(tmp_path: object) -> None:
    server = NatsServer().start()
    port = server.port
    server.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # would raise if the server still listened
