"""Issue 9 item 7: every admin action (halt, resume, kill, enable) appears on the market-data
status stream, against a real server (HTTP admin endpoint, binary gateway, journal); a replay of the
journal through a fresh publisher yields the same status messages (they are journaled
commands, not side effects)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import msgspec

from tickline.client import Client
from tickline.config import load_config
from tickline.journal import replay_events
from tickline.server import Server
from tickline.stream import AccountStatusUpdate, Bus, MarketDataPublisher, StatusUpdate

KEY = "admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def shown(msgs: list[Any]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for m in msgs:
        if type(m) is StatusUpdate:
            out.append(("status", m.symbol, m.halted))
        else:
            assert type(m) is AccountStatusUpdate
            out.append(("account", m.symbol, m.account, m.enabled, m.cancelled))
    return out


def post(port: int, path: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST",
                                 headers={"Content-Length": "0", **AUTH})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_halt_resume_kill_enable_all_appear_on_the_status_stream(tmp_path: Path) -> None:
    """A real server (binary and HTTP ports, journal): orders over the binary gateway, the
    four admin actions as authenticated POSTs to /admin, a subscriber on status.*."""
    journal = tmp_path / "journal"
    config = load_config(None, port=0, http_port=0, journal_dir=str(journal))
    config.server = msgspec.structs.replace(config.server, admin_key=KEY)
    symbols = [i.symbol for i in config.instruments]
    assert len(symbols) >= 2

    async def scenario() -> list[Any]:
        server = Server(config)
        await server.start()
        try:
            status = server.exchange.bus.subscribe("status.*")
            async with await Client.connect("127.0.0.1", server.port, "alice-key") as alice:
                for i in range(3):
                    await alice.new_order("AAPL", "buy", 1, f"9{i}.00")
            for action, query in (("halt", "symbol=AAPL"), ("resume", "symbol=AAPL"),
                                  ("kill", "account=2"), ("enable", "account=2")):
                code, body = await asyncio.to_thread(post, server.http_port,
                                                     f"/admin/{action}?{query}")
                assert code == 200 and body["action"] == action
            await asyncio.sleep(0.05)
            return status.drain()
        finally:
            await server.stop()

    live = asyncio.run(scenario())
    want = [("status", "AAPL", True), ("status", "AAPL", False)]
    want += [("account", s, 2, False, 3) for s in symbols]
    want += [("account", s, 2, True, 0) for s in symbols]
    assert shown(live) == want  # in command order; a kill on every symbol, in config order
    # per topic, sequence numbers run 1, 2, ... without gaps
    for s in symbols:
        assert [m.seq for m in live if m.symbol == s] == list(
            range(1, 1 + sum(1 for m in live if m.symbol == s)))

    # The same messages from the journal alone.
    bus = Bus(default_capacity=10_000)
    replayed = bus.subscribe("status.*")
    md = MarketDataPublisher(bus, config.instruments)
    for cmd, events in replay_events(journal):
        md.publish(cmd.seq, cmd.ts, events)
    enc = msgspec.json.encode
    assert [enc(m) for m in replayed.drain()] == [enc(m) for m in live]


def test_no_subscriber_no_account_status_messages() -> None:
    """Nobody listens on status.SYM: the publisher builds nothing for a kill."""
    from tickline.matching import AccountStatusChanged

    bus = Bus()
    md = MarketDataPublisher(bus, ["AAA", "BBB"])
    md.publish(1, 1, [AccountStatusChanged(7, False, 0)])
    assert md.messages == 0
    sub = bus.subscribe("status.BBB")
    md.publish(2, 2, [AccountStatusChanged(7, True, 0)])
    assert shown(sub.drain()) == [("account", "BBB", 7, True, 0)]
    assert md.messages == 1
