"""Crash and restart of a real ``tickline serve``: SIGKILL during load, restart on the same
journal, and check that every order acknowledged before the kill is there exactly once and
that the recovered book equals a replay of the journal. Also ``tickline loadgen`` against
the real server (JSON keys)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.served import ROOT, TICKLINE, Served, run_tickline
from tickline.client import Client
from tickline.gateway import protocol as p
from tickline.journal import replay, replay_events
from tickline.matching import Accepted, Instrument, RejectReason

SURGE = 6000


def _load_then_kill(server: Served) -> dict[str, int]:
    """Pipeline orders from two accounts; SIGKILL the server while many are in flight.
    Returns client order id -> engine order id for every acknowledged order."""
    acked: dict[str, int] = {}

    async def scenario() -> None:
        alice = await Client.connect("127.0.0.1", server.port, "alice-key")
        bob = await Client.connect("127.0.0.1", server.port, "bob-key-3")
        futs: list[asyncio.Future[p.Response]] = []

        def send(i: int) -> None:
            c, side = (alice, "sell") if i % 2 else (bob, "buy")
            # prices overlap around 100.00: some orders trade, most rest
            ticks = (i % 11 - 5) * (1 if side == "sell" else -1) + 2
            futs.append(c.send_new_order("AAPL", side, 1 + i % 5, f"{100 + ticks / 100:.2f}",
                                         client_order_id=f"o{i}"))

        for batch in range(40):  # steady pipelined load...
            for j in range(50):
                send(batch * 50 + j)
            await asyncio.sleep(0.002)
        for i in range(2000, 2000 + SURGE):  # ...then a surge, killed while in flight
            send(i)
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futs) < 2500 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.gather(alice.wait_closed(), bob.wait_closed())
        for fut in futs:
            if fut.done() and fut.exception() is None:
                first = fut.result().reports[0]
                if isinstance(first, p.OrderAccepted):
                    acked[first.client_order_id] = first.order_id
        for c in (alice, bob):
            c.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    server.proc.wait(10)
    return acked


def test_sigkill_mid_load_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    first = Served(journal)
    try:
        acked = _load_then_kill(first)
    finally:
        first.close()
    assert first.proc.returncode == -signal.SIGKILL
    assert len(acked) >= 500, f"only {len(acked)} orders were acknowledged before the kill"
    print(f"acknowledged before the kill: {len(acked)} of {2000 + SURGE} sent")

    second = Served(journal)
    try:
        assert any(line.startswith("recovered ") for line in second.lines), second.lines
        # every acknowledged order is in the journal exactly once, with its engine id
        accepted = Counter[tuple[str, int]]()
        for _cmd, events in replay_events(journal):
            for ev in events:
                if isinstance(ev, Accepted) and ev.client_order_id:
                    accepted[(ev.client_order_id, ev.order_id)] += 1
        by_clid = Counter(clid for clid, _oid in accepted.elements())
        for clid, order_id in acked.items():
            assert accepted[(clid, order_id)] == 1, (clid, order_id)
            assert by_clid[clid] == 1, clid
        # the recovered server's book equals a replay of the journal
        engine, _report = replay(journal)
        inst = Instrument(symbol="AAPL", price_decimals=2)
        want = engine.book("AAPL").depth(1000)
        book = second.get_json("/book/AAPL?depth=1000")
        assert book["last_seq"] == engine.last_seq
        for side in ("bids", "asks"):
            got = [(inst.price_from_str(lv["price"]), int(lv["quantity"]), lv["orders"])
                   for lv in book[side]]
            assert got == want[side], side

        # the restarted server keeps trading and refuses a duplicate client order id
        async def after() -> None:
            async with await Client.connect("127.0.0.1", second.port, "alice-key") as c:
                ack = await c.new_order("AAPL", "sell", 1, "150.00", client_order_id="after")
                assert ack.order_id > max(acked.values())
                some_clid = next(k for k in acked if int(k[1:]) % 2)  # an alice order
                resp = await c.send_new_order("AAPL", "sell", 1, "150.00",
                                              client_order_id=some_clid)
                rejected = resp.reports[0]
                assert isinstance(rejected, p.OrderRejected)
                assert rejected.reason == RejectReason.DUPLICATE_CLIENT_ORDER_ID
        asyncio.run(asyncio.wait_for(after(), 30))
        assert second.terminate() == 0
    finally:
        second.close()


@pytest.mark.parametrize(("send_interval", "wait"),
                         [("0", "spin"), ("0", "sleep"), ("0.002", "spin")])
def test_loadgen_cli_against_tickline_serve(tmp_path: Path, send_interval: str,
                                            wait: str) -> None:
    """Spinning to each planned send time (0), sleeping in the kernel until it (0, sleep) or
    sending what is due on a 2 ms timer: the offered rate is kept either way."""
    server = Served(tmp_path / "journal", "--durability", "none")
    try:
        out = tmp_path / "lg.json"
        result = subprocess.run(
            [*TICKLINE, "loadgen", "--port", str(server.port), "--rate", "2000",
             "--duration", "1.5", "--warmup", "0.5", "--sessions", "2", "--json", str(out),
             "--send-interval", send_interval, "--wait", wait],
            capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        data = json.loads(out.read_text())
        assert data["offered_rate"] == 2000
        assert 1000 < data["achieved_rate"] < 3000
        assert data["errors"] == 0
        assert set(data["latency_us"]) >= {"p50", "p99", "p99_9", "max"}
        assert 0 < data["latency_us"]["p50"] <= data["latency_us"]["p99"] \
            <= data["latency_us"]["p99_9"] <= data["latency_us"]["max"]
        assert "round trip" in result.stderr
        health = server.get_json("/health")
        assert health["resting_orders"] < 1000  # the mix keeps the book bounded
        assert server.terminate() == 0
    finally:
        server.close()


# --- the short SIGKILL loop that CI runs (issue 14, "Tests") -------------------------------

ROUNDS = 10
LOOP_CONFIG = "[server]\ndurability = \"batch\"\nsnapshot_every = 250\n"
AAPL = Instrument(symbol="AAPL", price_decimals=2)


def _resting_load_then_kill(server: Served, round_: int, kill_after: int
                            ) -> tuple[dict[str, int], list[str]]:
    """Pipeline resting orders from two accounts (alice asks above 101.00, bob bids below
    99.00: nothing trades, so every journaled order stays on the book) and SIGKILL the
    server once ``kill_after`` are answered, with hundreds more in flight. Returns client
    order id -> engine order id of every acknowledged order, and every client order id
    sent (acknowledged or not)."""
    acked: dict[str, int] = {}
    sent: list[str] = []

    async def scenario() -> None:
        alice = await Client.connect("127.0.0.1", server.port, "alice-key")
        bob = await Client.connect("127.0.0.1", server.port, "bob-key-3")
        futs: list[asyncio.Future[p.Response]] = []
        for i in range(kill_after + 1500):
            c, side, price = ((alice, "sell", f"{101 + i % 40 / 100:.2f}") if i % 2
                              else (bob, "buy", f"{99 - i % 40 / 100:.2f}"))
            clid = f"r{round_}-{i}"
            sent.append(clid)
            futs.append(c.send_new_order("AAPL", side, 1 + i % 3, price,
                                         client_order_id=clid))
            if i % 100 == 99:
                await asyncio.sleep(0)  # let the pipeline flow while we keep sending
        deadline = time.monotonic() + 20
        while sum(f.done() for f in futs) < kill_after and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        os.kill(server.proc.pid, signal.SIGKILL)
        await asyncio.gather(alice.wait_closed(), bob.wait_closed())
        for fut in futs:
            if fut.done() and fut.exception() is None:
                first = fut.result().reports[0]
                assert isinstance(first, p.OrderAccepted), first
                acked[first.client_order_id] = first.order_id
        for c in (alice, bob):
            c.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert server.proc.wait(10) == -signal.SIGKILL
    return acked, sent


def _levels(side: list[dict[str, Any]]) -> list[list[int]]:
    return [[AAPL.price_from_str(lv["price"]), int(lv["quantity"]), lv["orders"]]
            for lv in side]


def _check_after_restart(server: Served, journal: Path, tmp_path: Path,
                         acked: dict[str, int], sent: list[str]) -> None:
    """Through the public interfaces only (the HTTP book, ``tickline replay`` beside the
    running server, the client): the book equals the journal's replay; every acknowledged
    order is on it exactly once, with its engine id; nothing else is but orders that were
    sent and journaled without their acknowledgement arriving. Leaves the book empty."""
    book = server.get_json("/book/AAPL?depth=1000")
    out = tmp_path / "replay.json"
    replayed = run_tickline("replay", str(journal), "--json", str(out), "--levels", "1000")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    want = json.loads(out.read_text())
    assert book["last_seq"] == want["last_sequence"]
    assert _levels(book["bids"]) == want["books"]["AAPL"]["bids"]
    assert _levels(book["asks"]) == want["books"]["AAPL"]["asks"]
    on_book = sum(lv["orders"] for lv in book["bids"] + book["asks"])

    async def cancel_all() -> int:
        found_unacked = 0
        async with await Client.connect("127.0.0.1", server.port, "alice-key") as alice, \
                await Client.connect("127.0.0.1", server.port, "bob-key-3") as bob:
            def owner(clid: str) -> Client:
                return alice if int(clid.split("-")[1]) % 2 else bob

            def cancel(clid: str) -> asyncio.Future[p.Response]:
                return owner(clid).send_cancel("AAPL", orig_client_order_id=clid)

            # every acknowledged order is there, with the engine id it was acknowledged with
            for clid, resp in zip(acked, await asyncio.gather(*map(cancel, acked)),
                                  strict=True):
                done = resp.reports[0]
                assert isinstance(done, p.OrderCancelled), (clid, done)
                assert done.order_id == acked[clid], clid
            # ... exactly once: no second live order carries its client order id
            for clid, resp in zip(acked, await asyncio.gather(*map(cancel, acked)),
                                  strict=True):
                gone = resp.reports[0]
                assert isinstance(gone, p.OrderRejected), (clid, gone)
                assert gone.reason == RejectReason.UNKNOWN_ORDER, (clid, gone)
            # the rest were sent, journaled, not acknowledged before the kill: allowed
            unacked = [clid for clid in sent if clid not in acked]
            for resp in await asyncio.gather(*map(cancel, unacked)):
                found_unacked += isinstance(resp.reports[0], p.OrderCancelled)
        return found_unacked

    found_unacked = asyncio.run(asyncio.wait_for(cancel_all(), 60))
    assert on_book == len(acked) + found_unacked
    after = server.get_json("/book/AAPL?depth=10")
    assert after["bids"] == [] and after["asks"] == []  # nothing else was on the book


def test_sigkill_loop_under_load_with_snapshots(tmp_path: Path) -> None:
    """Ten rounds: load from the public client, SIGKILL mid-surge (durability ``batch``,
    a snapshot every 250 commands, so some are being written when the kill comes), restart
    on the same journal, check through the public interfaces only."""
    journal = tmp_path / "journal"
    config = tmp_path / "tickline.toml"
    config.write_text(LOOP_CONFIG)
    rng = random.Random(14)
    acked_total = from_snapshot = mid_flight = 0
    server = Served(journal, "--config", str(config))
    try:
        for round_ in range(ROUNDS):
            seq_before = server.get_json("/health")["last_seq"]
            acked, sent = _resting_load_then_kill(server, round_, rng.randint(200, 1500))
            server.close()
            assert len(acked) >= 200, f"round {round_}: only {len(acked)} acknowledged"
            acked_total += len(acked)
            server = Served(journal, "--config", str(config))
            health = server.get_json("/health")
            assert health["last_seq"] >= seq_before + len(acked), (round_, health)
            from_snapshot += health["recovery"]["snapshot_seq"] > 0
            mid_flight += len(acked) < len(sent)
            _check_after_restart(server, journal, tmp_path, acked, sent)
        health = server.get_json("/health")
        assert health["snapshots"]["failed"] == 0 and health["status"] == "ok"
        assert server.terminate() == 0
    finally:
        server.close()
    assert acked_total >= ROUNDS * 200
    assert mid_flight >= ROUNDS // 2, "the kills did not come with requests in flight"
    assert from_snapshot >= 1, "no restart recovered from a snapshot"
    assert list(journal.glob("snapshot-*.tks")), "the loop ran without snapshots"
