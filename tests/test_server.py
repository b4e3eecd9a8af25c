"""``tickline serve``'s lifecycle around the exchange: a real server on port 0 and a temporary
journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tickline.client import Client
from tickline.config import load_config
from tickline.gateway import protocol as p
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
