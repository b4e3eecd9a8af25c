"""Property: whatever the interleaving of orders, disconnects, resumes and server restarts,
the reports one client receives (responses and unsolicited, across all its sessions) are
exactly its account's reports as a replay of the journal produces them: 1..n, no gap, no
duplicate, byte for byte."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.binary_harness import ServerThread
from tickline.client import Client, OrderRejectedError
from tickline.gateway import protocol as p
from tickline.gateway.binary import to_wire
from tickline.journal import replay_events
from tickline.stream import ReportBuilder

HOST = "127.0.0.1"
ALICE = 2
actions = st.lists(st.sampled_from(["orders", "orders", "bob", "bob", "disconnect", "resume",
                                    "restart", "cancel_all"]), min_size=4, max_size=14)


async def alice_orders(alice: Client, got: list[p.Report], n: int, price: int) -> None:
    for i in range(n):
        try:
            ack = await alice.new_order("AAPL", "sell" if i % 2 else "buy", 1 + i % 3,
                                        f"{price + (i % 3) * (1 if i % 2 else -1)}.00")
            got.extend(ack.reports)
        except OrderRejectedError as e:
            got.append(e.report)


async def bob_trades(port: int) -> None:
    async with await Client.connect(HOST, port, "bob-key-3") as bob:
        for side, price in (("buy", "103.00"), ("sell", "97.00")):
            await bob.new_order("AAPL", side, 3, price, tif="ioc")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=actions)
def test_reports_survive_disconnects_resumes_and_restarts(plan: list[str]) -> None:
    journal = Path(tempfile.mkdtemp()) / "journal"
    got: list[p.Report] = []  # everything alice's sessions received, in arrival order
    servers = [ServerThread(journal_dir=journal).__enter__()]

    async def scenario() -> None:
        alice: Client | None = None
        last = 0

        async def connect() -> Client:
            client = await Client.connect(HOST, servers[-1].port, "alice-key",
                                          resume_from=last)
            client.on_report = got.append
            return client

        async def close(client: Client | None) -> int:
            if client is None:
                return last
            await asyncio.sleep(0.05)  # let its unsolicited reports arrive
            got.extend(client.reports_nowait())  # any that came before on_report was set
            seen = client.last_report_seq
            client.close()
            await client.wait_closed()
            return seen

        for step in plan:
            if step in ("orders", "cancel_all", "resume") and alice is None:
                alice = await connect()
            if step == "orders":
                assert alice is not None
                await alice_orders(alice, got, 3, 100)
            elif step == "cancel_all":
                assert alice is not None
                resp = await alice.send_request(p.MassCancelRequest(request_id=0))
                got.extend(resp.reports)
            elif step == "bob":
                await bob_trades(servers[-1].port)
            elif step in ("disconnect", "restart"):
                last = await close(alice)
                alice = None
                if step == "restart":
                    await asyncio.to_thread(servers[-1].stop)
                    servers.append(await asyncio.to_thread(
                        ServerThread(journal_dir=journal).__enter__))
        if alice is None:
            alice = await connect()  # catch up on everything still missed
        await asyncio.sleep(0.1)
        await close(alice)

    try:
        asyncio.run(scenario())
    finally:
        servers[-1].stop()

    builder = ReportBuilder()
    expected = [r for cmd, events in replay_events(journal)
                for r in builder.build(cmd.seq, cmd.ts, events) if r.account == ALICE]
    assert [r.seq for r in expected] == list(range(1, len(expected) + 1))
    received = [r for r in got if r.exec_seq]  # exec_seq 0: a gateway refusal, not a report
    assert sorted(r.exec_seq for r in received) == [r.seq for r in expected]  # no gap, no dup
    enc = msgspec.msgpack.encode
    by_seq = {r.exec_seq: enc(r) for r in received}
    assert all(by_seq[r.seq] == enc(to_wire(r)) for r in expected)
