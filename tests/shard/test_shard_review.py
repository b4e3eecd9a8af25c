"""Shard-mode defects found in review (docs/shards.md), each against real shard processes:

* cancel on disconnect covers the session's orders still in the same batch (they were only
  in the shard, not yet released, when the deferred cancel was built);
* a broadcast (all-symbol mass cancel, kill switch) meeting a shard that hangs before it
  journaled its part is re-sent to the restarted shard: every part applied, released and
  replayed the same, never half a command acknowledged;
* a shard restarted in the batch before the others answered: the broadcast's events still
  come shard by shard, equal to the replay of the journals.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tickline.config import DEFAULT_INSTRUMENTS
from tickline.matching import Command, Event, NewOrder, RejectReason
from tickline.matching.commands import MassCancel, SetAccountStatus
from tickline.matching.events import AccountStatusChanged, Cancelled, MassCancelled
from tickline.shard import ShardedExchange
from tickline.shard.replay import replay_merged
from tickline.stream.reports import ExecReport
from tickline.venue import VenueServices


def _shards(ex: ShardedExchange) -> tuple[int, int]:
    a, m = ex.map.shard_of("AAPL"), ex.map.shard_of("MSFT")
    assert a is not None and m is not None and a != m
    return a, m


def _replayed(directory: Path, seq: int) -> list[Event]:
    return next(evs for cmd, evs in replay_merged(directory) if cmd.seq == seq)


def test_cancel_on_disconnect_covers_orders_still_in_the_batch(tmp_path: Path) -> None:
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, durability="none")
    services = VenueServices(ex)
    try:
        _shards(ex)
        port = ex.router.attach(1, lambda _r: None)
        # connect, enter orders on both shards, disconnect: all in one batch
        for sym, price in (("AAPL", 100), ("MSFT", 101)):
            ex.submit(NewOrder(account=1, symbol=sym, side=1, price=price, quantity=1,
                               client_order_id=sym), origin=port)
        services.cancel_on_disconnect(port, 1)
        port.close()
        ex.pump()
        assert services.cancels_on_disconnect == 1
        assert dict(ex.engine.orders) == {}  # released state: nothing live
        # and the shards agree: the journals replay to both orders cancelled
        cancelled = [e for _c, evs in replay_merged(tmp_path) for e in evs
                     if type(e) is Cancelled]
        assert sorted(e.symbol for e in cancelled) == ["AAPL", "MSFT"]
    finally:
        ex.close()


@pytest.mark.parametrize("broadcast", [MassCancel(account=2),
                                       SetAccountStatus(account=2, enabled=False)],
                         ids=["mass-cancel", "kill-switch"])
def test_broadcast_unjournaled_by_a_hung_shard_is_resent_not_half_acknowledged(
        tmp_path: Path, broadcast: Command) -> None:
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, reply_timeout=1.0,
                         durability="none")
    try:
        a, _m = _shards(ex)
        for sym, price in (("AAPL", 100), ("MSFT", 101)):
            ex.submit(NewOrder(account=2, symbol=sym, side=1, price=price, quantity=1,
                               client_order_id=sym))
        ex.pump()
        assert len(ex.engine.orders) == 2
        hung = ex.shards[a].pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # AAPL's shard never journals its part
        out: list[tuple[Command, list[Event], list[ExecReport]]] = []
        ex.submit(broadcast, lambda c, e, r: out.append((c, e, r)))
        ex.pump()
        assert ex.shards[a].restarts == 1 and ex.shards[a].pid != hung
        ((cmd, events, reports),) = out
        summary = events[-1]
        count = (summary.count if type(summary) is MassCancelled else
                 summary.cancelled if type(summary) is AccountStatusChanged else -1)
        assert count == 2  # both shards' orders, not only the healthy shard's
        assert sorted(e.symbol for e in events if type(e) is Cancelled) == \
            ["AAPL", "MSFT"]
        assert all(r.reason != RejectReason.SHARD_UNAVAILABLE for r in reports)
        assert dict(ex.engine.orders) == {}
        assert _replayed(tmp_path, cmd.seq) == events  # journal before acknowledge, replay
    finally:
        ex.close()


def test_late_shard_results_merge_shard_by_shard_like_replay(tmp_path: Path) -> None:
    """Shard 1 hangs with a frame too big for its ring: its send fails and it is restarted
    (re-sent the mass cancel) before shard 0's results are collected; the merged events
    must still come shard 0 first, as the replay merges them."""
    # max_queue_ms=0: the 40,000 orders may wait over a second on a loaded machine; this test
    # is about a hung shard (411), not the firm queue deadline (410)
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, reply_timeout=1.0,
                         durability="none", max_batch=1 << 16, max_queue_ms=0)
    try:
        a, m = _shards(ex)
        assert (a, m) == (0, 1)
        for sym, price in (("AAPL", 100), ("MSFT", 101)):
            ex.submit(NewOrder(account=2, symbol=sym, side=1, price=price, quantity=1,
                               client_order_id=sym))
        ex.pump()
        hung = ex.shards[m].pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)
        # > 1 MiB of commands for shard 1 (its ring holds 1 MiB): the send times out
        rejected: list[int] = []
        for i in range(40_000):
            ex.submit(NewOrder(account=3, symbol="MSFT", side=2, price=200, quantity=1,
                               client_order_id=f"f{i}"),
                      lambda _c, _e, r: rejected.append(r[0].reason))
        out: list[tuple[Command, list[Event]]] = []
        ex.submit(MassCancel(account=2), lambda c, e, _r: out.append((c, e)))
        ex.pump()
        assert ex.shards[m].restarts == 1
        assert set(rejected) == {RejectReason.SHARD_UNAVAILABLE} and len(rejected) == 40_000
        ((cmd, events),) = out
        assert [e.symbol for e in events if type(e) is Cancelled] == ["AAPL", "MSFT"]
        assert _replayed(tmp_path, cmd.seq) == events
    finally:
        ex.close()


class _Mono:
    """A monotonic clock the test moves (the inbound queue's enqueue stamps)."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def test_stale_order_answered_410_unsequenced_in_shard_mode(tmp_path: Path) -> None:
    from tickline.matching.commands import Cancel

    mono = _Mono()
    ex = ShardedExchange(DEFAULT_INSTRUMENTS, shards=2, data_dir=tmp_path, durability="none",
                         max_queue_ms=1000, monotonic=mono)
    try:
        out: list[tuple[Command, list[ExecReport]]] = []

        def rec(c: Command, _e: list[Event], r: list[ExecReport]) -> None:
            out.append((c, r))

        ex.submit(NewOrder(account=1, symbol="AAPL", side=1, price=100, quantity=1,
                           client_order_id="old"), rec)
        ex.submit(Cancel(account=1, symbol="MSFT", order_id=999), rec)
        mono.now += 1_500_000_000  # both waited 1.5 s: the order is stale, the cancel not
        ex.submit(NewOrder(account=1, symbol="MSFT", side=1, price=100, quantity=1,
                           client_order_id="fresh"), rec)
        ex.pump()
        (old, old_r), (cancel, _), (fresh, fresh_r) = out
        assert old.seq == 0 and [r.reason for r in old_r] == [RejectReason.STALE_ORDER]
        assert old_r[0].seq == 0
        assert cancel.seq == 1 and fresh.seq == 2  # cancels are never stale
        assert fresh_r[0].kind == 1 and fresh_r[0].seq == 2  # gap-free numbering
        assert ex.stale_orders == 1
        assert [c.seq for c, _ in replay_merged(tmp_path)] == [1, 2]  # never journaled
        assert dict(ex.engine.orders).keys() == {fresh_r[0].order_id}
    finally:
        ex.close()


def test_shard_mode_warns_that_lanes_and_match_deadline_do_not_apply(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import msgspec

    from tickline.config import default_config
    from tickline.server import Server

    cfg = default_config()
    cfg.server = msgspec.structs.replace(cfg.server, shards=2, journal_dir=str(tmp_path),
                                         durability="none")
    cfg.deadlines = msgspec.structs.replace(cfg.deadlines, max_queue_ms=250)
    with caplog.at_level("WARNING", logger="tickline.shard.exchange"):
        server = Server(cfg)
    try:
        ex = server.exchange
        assert isinstance(ex, ShardedExchange)
        (warning,) = [r.getMessage() for r in caplog.records if "shard mode" in r.getMessage()]
        assert "[lanes]" in warning and "match_ms" in warning and "max_queue_ms" in warning
        assert ex.max_queue_ns == 250_000_000  # the firm deadline is passed on and applied
    finally:
        ex.close()
        server.gc_monitor.uninstall()
