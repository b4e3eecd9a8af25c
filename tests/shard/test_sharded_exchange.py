"""ShardedExchange against the single-process Exchange and against its own failures.

* the same random command stream (orders on 3 symbols over 2 shards, cancels by client order
  id, all-symbol mass cancels, kill switch on/off) gives every account the same execution
  reports, numbered the same, as one process — ids aside (shards number orders by stride);
* a restart from the shard journals rebuilds the same report numbering, books and ids;
* a hung shard (SIGSTOP) holding a batch is killed and restarted in place, its command
  answered 411 (never journaled), and trading continues;
* a shard restarted after it journaled commands the gateway never released gives their
  events back (``Hello.late``), equal to the events of the first run.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest

from tickline.config import DEFAULT_INSTRUMENTS
from tickline.exchange import Exchange
from tickline.matching import Command, Event, NewOrder, RejectReason
from tickline.matching.commands import Cancel, MassCancel, SetAccountStatus
from tickline.shard import ShardedExchange
from tickline.shard.exchange import ShardHandle
from tickline.stream.reports import ExecReport

SYMBOLS = ["AAPL", "MSFT", "BTC-USD"]


def _stream(seed: int, n: int) -> list[Command]:
    rng = random.Random(seed)
    out: list[Command] = []
    live: list[tuple[int, str, str]] = []
    for i in range(n):
        r = rng.random()
        account = rng.choice((1, 2))
        if r < 0.6 or not live:
            sym = rng.choice(SYMBOLS)
            tick = 50 if sym == "BTC-USD" else 1
            clid = f"c{i}"
            out.append(NewOrder(account=account, symbol=sym, side=rng.choice((1, 2)),
                                price=(10_000 + rng.randint(-5, 5)) * tick,
                                quantity=rng.randint(1, 5), client_order_id=clid))
            live.append((account, sym, clid))
        elif r < 0.9:
            acc, sym, clid = live.pop(rng.randrange(len(live)))
            out.append(Cancel(account=acc, symbol=sym, orig_client_order_id=clid))
        elif r < 0.95:
            out.append(MassCancel(account=account))
        else:
            out.append(SetAccountStatus(account=account, enabled=rng.random() < 0.6))
    return out


def _copy(cmd: Command) -> Command:
    import msgspec
    return msgspec.structs.replace(cmd)


def _run(ex: Exchange, cmds: list[Command]) -> list[list[ExecReport]]:
    """Each command's own reports, by submission index (replies may come in another order
    than submitted: per account or lane, not globally)."""
    got: dict[int, list[ExecReport]] = {}
    for i, cmd in enumerate(cmds):
        ex.submit(_copy(cmd), lambda _c, _e, reports, i=i: got.__setitem__(i, list(reports)))
        if i % 7 == 6:
            ex.pump()
    ex.pump()
    return [got[i] for i in sorted(got)]


def _shape(r: ExecReport) -> tuple[Any, ...]:
    return (r.seq, r.account, r.kind, r.symbol, r.client_order_id, r.side, r.price, r.quantity,
            r.leaves, r.last_price, r.last_quantity, r.reason, r.cum_quantity)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_reports_as_one_process(tmp_path: Path, seed: int) -> None:
    cmds = _stream(seed, 400)
    # one lane: the sharded exchange sequences in arrival order (no priority lanes yet)
    one = Exchange(DEFAULT_INSTRUMENTS, journal_dir=tmp_path / "one", durability="none",
                   lanes=False)
    want = _run(one, cmds)
    one.close()
    sharded = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path / "two",
                              durability="none")
    try:
        got = _run(sharded, cmds)
        assert len(got) == len(want) == len(cmds)
        for w, g in zip(want, got, strict=True):
            # a mass cancel's cancels come shard by shard: compare as sets per command
            assert sorted(map(_shape, g)) == sorted(map(_shape, w))
        last = {a: sharded.reports.last_seq(a) for a in (1, 2)}
        digest = sharded.digest()
        ids = (sharded.engine.next_order_id, sharded.engine.next_trade_id)
    finally:
        sharded.close()
    again = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path / "two",
                            durability="none")
    try:  # rebuilt from the shard journals alone
        assert {a: again.reports.last_seq(a) for a in (1, 2)} == last
        assert again.digest() == digest
        assert (again.engine.next_order_id, again.engine.next_trade_id) == ids
        more = _run(again, [NewOrder(account=1, symbol="MSFT", side=1, price=1, quantity=1)])
        assert more[0][0].seq == last[1] + 1  # numbering continues
    finally:
        again.close()


def test_hung_shard_in_batch_is_restarted_and_its_command_answered_411(tmp_path: Path) -> None:
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, reply_timeout=1.0,
                         durability="none")
    try:
        k = ex.map.shard_of("AAPL")
        assert k is not None
        before = ex.shards[k].pid
        assert before is not None
        os.kill(before, signal.SIGSTOP)
        out: list[tuple[list[Event], list[ExecReport]]] = []
        ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100, quantity=1),
                  lambda _c, e, r: out.append((e, r)))
        other = "MSFT" if ex.map.shard_of("MSFT") != k else "BTC-USD"
        ex.submit(NewOrder(account=1, symbol=other, side=1, price=100 * 50, quantity=1),
                  lambda _c, e, r: out.append((e, r)))
        ex.pump()
        (_ev, rep), (ev2, rep2) = out
        assert rep[0].reason == RejectReason.SHARD_UNAVAILABLE and rep[0].seq == 0
        assert type(ev2[0]).__name__ == "Accepted" and rep2[0].seq == 1
        health = ex.shard_health()[k]
        assert health["up"] and health["restarts"] == 1 and health["pid"] != before
        out.clear()
        ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100, quantity=1),
                  lambda _c, e, r: out.append((e, r)))
        ex.pump()
        assert type(out[0][0][0]).__name__ == "Accepted" and out[0][1][0].seq == 2
    finally:
        ex.close()


def test_restarted_shard_returns_events_of_journaled_unreleased_commands(tmp_path: Path
                                                                         ) -> None:
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, durability="none")
    events: dict[int, list[Event]] = {}
    try:
        for i in range(6):
            ex.submit(NewOrder(account=1, symbol="AAPL", side=1 + i % 2, price=100,
                               quantity=2), lambda c, e, _r: events.__setitem__(c.seq, e))
        ex.pump()
        k = ex.map.shard_of("AAPL")
        assert k is not None
        make = ex.shards[k]._make_spec  # a second handle, same journal
    finally:
        ex.close()
    handle = ShardHandle(k, make)
    handle.acked_seq = 3  # as if the gateway had released only up to seq 3
    try:
        hello = handle.start(60)
        assert [seq for seq, _ in hello.late] == [4, 5, 6]
        assert {seq: evs for seq, evs in hello.late} == {s: events[s] for s in (4, 5, 6)}
    finally:
        handle.stop()


def test_dead_idle_shard_is_degraded_on_health_411_meanwhile_then_back(tmp_path: Path) -> None:
    import time

    import msgspec

    from tickline.config import default_config
    from tickline.server import Server

    cfg = default_config()
    cfg.server = msgspec.structs.replace(cfg.server, shards=2, journal_dir=str(tmp_path),
                                         durability="none")
    server = Server(cfg)
    ex = server.exchange
    assert isinstance(ex, ShardedExchange)
    try:
        assert server.health()["status"] == "ok"
        k = ex.map.shard_of("AAPL")
        assert k is not None
        proc = ex.shards[k].process
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        ex.check_shards()  # what run()'s watcher does every 100 ms
        health = server.health()
        assert health["status"] == "degraded" and f"shard(s) {k} down" in health["reason"]
        assert health["shards"][k]["up"] is False and "died" in health["shards"][k]["last_error"]
        out: list[list[ExecReport]] = []
        ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100, quantity=1),
                  lambda _c, _e, r: out.append(r))
        ex.pump()
        assert out[0][0].reason == RejectReason.SHARD_UNAVAILABLE and out[0][0].seq == 0
        deadline = time.monotonic() + 60
        while not ex.shards[k].up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.health()["status"] == "ok"
        ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100, quantity=1),
                  lambda _c, _e, r: out.append(r))
        ex.pump()
        assert out[1][0].kind == 1 and out[1][0].seq == 1  # accepted, first numbered report
    finally:
        ex.close()
        server.gc_monitor.uninstall()


def test_restart_after_411_cuts_the_unreleased_commands_from_the_journal(tmp_path: Path
                                                                         ) -> None:
    """The background restart that follows a failed in-batch restart: the commands after
    the last released seq were answered 411, so they are cut (quarantined), not replayed."""
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, durability="none")
    try:
        for i in range(6):
            ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100 + i, quantity=2))
        ex.pump()
        k = ex.map.shard_of("AAPL")
        assert k is not None
        make = ex.shards[k]._make_spec
    finally:
        ex.close()
    handle = ShardHandle(k, make)
    handle.acked_seq = 3
    handle.discard_unreleased = True
    try:
        hello = handle.start(60)
        assert hello.late == [] and hello.last_seq == 3
    finally:
        handle.stop()
    assert list((tmp_path / f"shard-{k}" / "quarantine").iterdir())
    handle.acked_seq = 0
    handle.discard_unreleased = False
    try:  # the cut is durable: a normal restart sees seqs 1..3 only
        hello = handle.start(60)
        assert [seq for seq, _ in hello.late] == [1, 2, 3]
    finally:
        handle.stop()
    again = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path,
                            durability="none")
    try:
        assert len(again.engine.orders) == 3 and again.reports.last_seq(1) == 3
    finally:
        again.close()
