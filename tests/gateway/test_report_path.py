"""The one report path, end to end over real sockets and a real journal.

Several accounts, several sessions per account, random order flow (stops and icebergs
included). Every session must
receive exactly its own requests' reports in their responses and exactly the unsolicited
reports about the orders it entered; each account's report numbers are 1..n without gap or
duplicate; and the reports rebuilt from a replay of the journal equal the ones delivered
live, byte for byte.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import msgspec
import pytest

from tests.gateway.binary_harness import ServerThread
from tickline.client import Client
from tickline.gateway import protocol as p
from tickline.gateway.binary import to_wire
from tickline.journal import replay_events
from tickline.matching import BUY, SELL, Cancel, NewOrder, Replace
from tickline.matching.types import GTC, IOC
from tickline.stream import ExecKind, ExecReport, ReportBuilder

SESSIONS = [("alice-key", "a1"), ("alice-key", "a2"), ("bob-key-3", "b1"),
            ("mm1-key-0", "m1")]
ACCOUNT_OF = {"a1": 2, "a2": 2, "b1": 3, "m1": 11}
encode = msgspec.msgpack.encode


def random_request(rng: random.Random, tag: str, n: int, live: list[int]
                   ) -> p.NewOrderRequest | p.CancelRequest | p.ReplaceRequest:
    clid = f"{tag}-{n}"
    roll = rng.random()
    if live and roll < 0.2:
        return p.CancelRequest(request_id=0, symbol="AAPL", order_id=rng.choice(live),
                               client_order_id=clid)
    if live and roll < 0.4:
        return p.ReplaceRequest(request_id=0, symbol="AAPL", order_id=rng.choice(live),
                                price=10_000 + rng.randint(-3, 3) if rng.random() < 0.5 else 0,
                                quantity=rng.randint(1, 8), client_order_id=clid)
    side = rng.choice([BUY, SELL])
    if roll < 0.5:  # a stop(-limit) around the last price: triggers now, later or never
        stop = 10_000 + rng.randint(-3, 3)
        limit = rng.random() < 0.5
        return p.NewOrderRequest(request_id=0, symbol="AAPL", side=side,
                                 quantity=rng.randint(1, 6),
                                 price=stop + (2 if side == BUY else -2) if limit else 0,
                                 order_type=4 if limit else 3, stop_price=stop,
                                 tif=GTC if limit else IOC, client_order_id=clid)
    quantity = rng.randint(1, 12)
    return p.NewOrderRequest(request_id=0, symbol="AAPL", side=side,
                             quantity=quantity, price=10_000 + rng.randint(-3, 3),
                             tif=IOC if rng.random() < 0.2 else GTC, client_order_id=clid,
                             display_quantity=rng.randint(1, quantity)
                             if roll < 0.65 and quantity > 1 else 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_session_gets_exactly_its_reports_and_replay_rebuilds_them(
        tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    journal = tmp_path / "journal"
    # per session: clid of each request -> the wire reports of its Response; unsolicited
    responses: dict[str, dict[str, list[p.Report]]] = defaultdict(dict)
    unsolicited: dict[str, list[p.Report]] = {}
    entered: dict[str, set[int]] = defaultdict(set)

    with ServerThread(journal_dir=journal) as server:
        async def scenario() -> None:
            clients = [await Client.connect("127.0.0.1", server.port, key)
                       for key, _tag in SESSIONS]
            # live orders per account: a session also cancels and replaces its siblings'
            live: dict[int, set[int]] = defaultdict(set)
            n = 0
            for _wave in range(6):
                futs = []
                for client, (_key, tag) in zip(clients, SESSIONS, strict=True):
                    for _ in range(12):
                        n += 1
                        req = random_request(rng, tag, n, sorted(live[ACCOUNT_OF[tag]]))
                        futs.append((tag, req.client_order_id, client.send_request(req)))
                for tag, clid, fut in futs:
                    resp = await asyncio.wait_for(fut, 10)
                    responses[tag][clid] = resp.reports
                    for r in resp.reports:
                        if isinstance(r, p.OrderAccepted):
                            entered[tag].add(r.order_id)
                            live[ACCOUNT_OF[tag]].add(r.order_id)
                        elif (isinstance(r, p.OrderCancelled)
                              or (isinstance(r, p.Fill) and r.leaves == 0)):
                            live[ACCOUNT_OF[tag]].discard(r.order_id)
                await asyncio.sleep(0.05)  # unsolicited reports of this wave arrive
                for client, (_key, tag) in zip(clients, SESSIONS, strict=True):
                    for r in client.reports_nowait():
                        unsolicited.setdefault(tag, []).append(r)
                        if isinstance(r, p.OrderCancelled) or (
                                isinstance(r, p.Fill) and r.leaves == 0):
                            live[ACCOUNT_OF[tag]].discard(r.order_id)
            for client in clients:
                await client.logout()
                client.close()
                await client.wait_closed()
        asyncio.run(scenario())

    # Rebuild every report from the journal alone.
    builder = ReportBuilder()
    rebuilt: list[tuple[str, list[ExecReport]]] = []  # (client order id of the command, ...)
    for cmd, events in replay_events(journal):
        clid = cmd.client_order_id if isinstance(cmd, NewOrder | Cancel | Replace) else ""
        rebuilt.append((clid, builder.build(cmd.seq, cmd.ts, events)))

    by_clid = {clid: reports for clid, reports in rebuilt if clid}
    owner_of_clid = {clid: tag for tag, rs in responses.items() for clid in rs}
    account_of = ACCOUNT_OF
    total = 0
    for tag, rs in responses.items():
        for clid, wire in rs.items():
            mine = [r for r in by_clid[clid] if r.account == account_of[tag]]
            assert [encode(w) for w in wire] == [encode(to_wire(r)) for r in mine], clid
            total += len(wire)
    assert total > 200

    for tag in account_of:
        expected = [r for clid, reports in rebuilt
                    if owner_of_clid.get(clid) != tag
                    for r in reports
                    if r.account == account_of[tag] and r.order_id in entered[tag]
                    and r.kind != ExecKind.REJECTED]
        got = unsolicited.get(tag, [])
        assert [encode(w) for w in got] == [encode(to_wire(r)) for r in expected], tag
    assert sum(len(v) for v in unsolicited.values()) > 20  # makers were filled
    kinds = {r.kind for _c, reports in rebuilt for r in reports}
    assert ExecKind.TRIGGERED in kinds  # stops triggered (and icebergs rested) in the flow

    # Each account's numbers are 1..n, and every one of them reached some session.
    for account in set(account_of.values()):
        numbers = [r.seq for _c, reports in rebuilt for r in reports if r.account == account]
        assert numbers == list(range(1, len(numbers) + 1))
        seen = {w.exec_seq for tag, rs in responses.items() if account_of[tag] == account
                for wire in rs.values() for w in wire}
        seen |= {w.exec_seq for tag, ws in unsolicited.items() if account_of[tag] == account
                 for w in ws}
        assert seen == set(numbers)
