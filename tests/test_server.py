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

    async def scenario() -> tuple[int, list[p.Response]]:
        task = asyncio.create_task(serve(config, ready=servers.append))
        while not servers:
            await asyncio.sleep(0.01)
        server = servers[0]
        client = await Client.connect("127.0.0.1", server.port, "alice-key")
        await client.new_order("AAPL", "buy", 1, "1.00")
        journal = server.exchange.journal
        assert journal is not None

        def broken_commit() -> None:
            raise OSError(28, "No space left on device")

        journal.commit = broken_commit  # type: ignore[method-assign]
        unanswered = client.send_new_order("AAPL", "buy", 1, "1.01")
        await asyncio.sleep(0.1)
        assert server.health()["status"] != "ok"
        answers = []
        if not task.done():  # the gateway may still be closing sessions
            later = client.send_new_order("AAPL", "buy", 1, "1.02")
            answers.append(await asyncio.wait_for(later, 5))
        code = await asyncio.wait_for(task, 10)
        assert not unanswered.done() or unanswered.exception() is not None
        client.close()
        return code, answers

    code, answers = asyncio.run(scenario())
    assert code == 1
    for resp in answers:
        assert isinstance(resp.reports[0], p.OrderRejected)
        assert resp.reports[0].reason == RejectReason.THROTTLED
