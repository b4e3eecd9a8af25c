"""Issue 9 item 7: every admin action (halt, resume, kill, enable) appears on the market-data
status stream, against an exchange with a real journal and real sockets; a replay of the
journal through a fresh publisher yields the same status messages (they are journaled
commands, not side effects)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from tests.gateway.binary_harness import ServerThread
from tickline.client import Client
from tickline.gateway.admin import AdminEndpoint
from tickline.journal import replay_events
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


def test_halt_resume_kill_enable_all_appear_on_the_status_stream(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with ServerThread(journal_dir=journal) as server:
        symbols = [i.symbol for i in server.config.instruments]
        assert len(symbols) >= 2
        status = server.call(lambda: server.exchange.bus.subscribe("status.*"))
        admin = AdminEndpoint(server.exchange, KEY, {a.id for a in server.config.accounts})

        async def resting() -> None:
            async with await Client.connect("127.0.0.1", server.port, "alice-key") as alice:
                for i in range(3):
                    await alice.new_order("AAPL", "buy", 1, f"9{i}.00")
        asyncio.run(resting())
        for action, query in (("halt", "symbol=AAPL"), ("resume", "symbol=AAPL"),
                              ("kill", "account=2"), ("enable", "account=2")):
            result = server.run(admin.run(action, query, AUTH))
            assert result["action"] == action
        server.settle()
        live = server.call(status.drain)
    want = [("status", "AAPL", True), ("status", "AAPL", False)]
    want += [("account", s, 2, False, 3) for s in symbols]
    want += [("account", s, 2, True, 0) for s in symbols]
    assert sorted(shown(live)) == sorted(want)
    # per topic, sequence numbers run 1, 2, ... without gaps
    for s in symbols:
        assert [m.seq for m in live if m.symbol == s] == list(
            range(1, 1 + sum(1 for m in live if m.symbol == s)))

    # The same messages from the journal alone.
    bus = Bus(default_capacity=10_000)
    replayed = bus.subscribe("status.*")
    md = MarketDataPublisher(bus, server.config.instruments)
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
