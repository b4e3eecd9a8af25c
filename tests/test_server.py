"""``tickline serve``'s lifecycle around the exchange: a real server on port 0 and a temporary
journal."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tickline.client import Client
from tickline.config import load_config
from tickline.gateway import protocol as p
from tickline.journal import lock_holder, replay
from tickline.journal import snapshot as snapshot_module
from tickline.matching import RejectReason
from tickline.server import Server, serve


def test_a_journal_failure_ends_serve_with_exit_code_1(tmp_path: Path) -> None:
    """Regression: after a journal error the exchange task was dead, yet ``serve`` kept
    running with ``/health`` "ok" and kept taking requests that were never answered."""
    config = load_config(None, port=0, http_port=0, journal_dir=str(tmp_path / "journal"))
    servers: list[Server] = []

    async def scenario() -> tuple[int, p.Response]:
        task = asyncio.create_task(serve(config, ready=servers.append))
        while not servers:
            await asyncio.sleep(0.01)
        server = servers[0]
        # hold serve's shutdown until the test has seen how a request after the failure
        # is answered (otherwise the gateways may close first and nothing is asserted)
        release = asyncio.Event()
        stop = server.stop

        async def gated_stop() -> None:
            await release.wait()
            await stop()

        server.stop = gated_stop  # type: ignore[method-assign]
        client = await Client.connect("127.0.0.1", server.port, "alice-key")
        await client.new_order("AAPL", "buy", 1, "1.00")
        journal = server.exchange.journal
        assert journal is not None

        def broken_commit() -> None:
            raise OSError(28, "No space left on device")

        journal.commit = broken_commit  # type: ignore[method-assign]
        unanswered = client.send_new_order("AAPL", "buy", 1, "1.01")
        for _ in range(500):
            if server.health()["status"] == "failed":
                break
            await asyncio.sleep(0.01)
        assert server.health()["status"] == "failed"
        assert "No space left on device" in server.health()["reason"]
        assert not task.done()
        later = await asyncio.wait_for(client.send_new_order("AAPL", "buy", 1, "1.02"), 5)
        release.set()
        code = await asyncio.wait_for(task, 10)
        # the request of the failed batch was never acknowledged
        assert not unanswered.done() or unanswered.exception() is not None
        client.close()
        return code, later

    code, later = asyncio.run(scenario())
    assert code == 1
    # a request after the failure is answered at once with a typed reject, not left waiting
    assert isinstance(later.reports[0], p.OrderRejected)
    assert later.reports[0].reason == RejectReason.THROTTLED


def test_failed_snapshots_show_on_health_and_metrics_and_sigterm_still_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14, item 2, in process (tests/journal/test_full_disk.py does it on a real full
    tmpfs where mounting is permitted): snapshot writes fail with ENOSPC after a few bytes;
    ``/health`` answers 503 "degraded" with the reason, ``/metrics`` counts the failures,
    no temporary file is left, and a real SIGTERM still drains, closes and exits 0."""
    journal_dir = tmp_path / "journal"
    config = load_config(None, port=0, http_port=0, journal_dir=str(journal_dir),
                         snapshot_every=20)
    servers: list[Server] = []
    sent: list[int] = []

    class FillingDisk:
        """The ``os`` of the snapshot module: ``write`` lands 10 bytes, then ENOSPC."""

        def write(self, fd: int, data: bytes | memoryview) -> int:
            if len(data) > 10:
                os.write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    def http_get(port: int, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    async def scenario() -> tuple[int, int, dict[str, Any], str]:
        task = asyncio.create_task(serve(config, ready=servers.append))
        while not servers:
            await asyncio.sleep(0.01)
        server = servers[0]
        monkeypatch.setattr(snapshot_module, "os", FillingDisk())
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as client:
            for i in range(400):  # until two periodic snapshots have failed
                await client.new_order("AAPL", "buy", 1, f"{1 + i / 100:.2f}")
                sent.append(i)
                if server.exchange.snapshots_failed >= 2:
                    break
        monkeypatch.undo()
        status, body = await asyncio.to_thread(http_get, server.http_port, "/health")
        _s, metrics = await asyncio.to_thread(http_get, server.http_port, "/metrics")
        os.kill(os.getpid(), signal.SIGTERM)  # serve's handler: drain, close, return
        code = await asyncio.wait_for(task, 20)
        return code, status, json.loads(body), metrics.decode()

    code, status, health, metrics = asyncio.run(scenario())
    assert status == 503 and health["status"] == "degraded", health
    assert "No space left on device" in str(health["reason"])
    snaps = health["snapshots"]
    assert snaps["written"] == 0 and snaps["failed"] >= 2, snaps
    assert snaps["last_error"] in health["reason"]
    assert f"tickline_exchange_snapshots_failed_total {snaps['failed']}" in metrics
    assert "tickline_exchange_snapshots_total 0" in metrics
    assert code == 0
    assert servers[0].exchange.journal is None  # closed
    assert lock_holder(journal_dir) is None
    assert not [p.name for p in journal_dir.iterdir() if p.name.endswith(".tmp")]
    engine, _report = replay(journal_dir)
    assert len(engine.orders) == len(sent)  # the journal holds every acknowledged order
