"""Fixtures for cluster mode: a private ``nats-server -js`` per test (free port, own store
directory under ``tmp_path``), never the machine's own server on 4222."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tickline.cluster.natsserver import NatsServer, NatsServerError, find_nats_server

pytest.importorskip("nats", reason="cluster extra not installed: pip install -e '.[cluster]'")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    try:
        find_nats_server()
    except NatsServerError as e:  # .ci/run installs it; a developer may not have it
        pytest.skip(str(e))
    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()
