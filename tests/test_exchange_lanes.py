"""Priority lanes and deadlines in the exchange (issue 11, items 4-5).

Cancels and admin commands travel in a high-priority inbound lane; an account's own cancel
never overtakes its own earlier commands (held back), nor do its later commands overtake an
earlier cancel (deferred under the starvation bound). A new order or replace that waited
longer than ``max_queue_ms`` is rejected ``STALE_ORDER`` unsequenced; the match and publish
stages have hard and soft deadlines. Fake monotonic clocks, real journals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.exchange import Exchange, ExchangeBusy
from tickline.journal import iter_commands
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancel,
    Cancelled,
    Command,
    Event,
    Instrument,
    MassCancel,
    MatchingEngine,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    SetTradingStatus,
)
from tickline.stream.reports import ExecReport

ABC = Instrument(symbol="ABC", tick_size=1, lot_size=1)
SEGMENT = 1 << 20


class Mono:
    """A fake monotonic clock (ns) the test moves by hand."""

    def __init__(self) -> None:
        self.now = 10_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1e6)


Seen = list[tuple[Command, list[Event], list[ExecReport]]]


def recorder(seen: Seen) -> Any:
    def reply(cmd: Command, events: list[Event], reports: list[ExecReport]) -> None:
        seen.append((cmd, events, reports))
    return reply


def order(account: int, price: int, side: int = BUY, clid: str = "") -> NewOrder:
    return NewOrder(account=account, symbol="ABC", side=side, quantity=1, price=price,
                    client_order_id=clid)


def rest(ex: Exchange, account: int, price: int, side: int = SELL) -> int:
    events = ex.process_now(order(account, price, side))
    assert type(events[0]) is Accepted
    return events[0].order_id


# -- the cancel lane ----------------------------------------------------------------------

def test_cancel_overtakes_a_full_ring_of_new_orders() -> None:
    ex = Exchange([ABC], capacity=16, max_batch=1024)
    oid = rest(ex, 7, 200)
    seen: Seen = []
    for i in range(16):
        ex.submit(order(1, 10 + i), recorder(seen))
    with pytest.raises(ExchangeBusy):  # the normal lane is full ...
        ex.submit(order(1, 9))
    ex.submit(Cancel(account=7, symbol="ABC", order_id=oid), recorder(seen))  # ... not this
    ex.pump()
    by_seq = sorted(seen, key=lambda s: s[0].seq)
    assert type(by_seq[0][0]) is Cancel and type(by_seq[0][1][0]) is Cancelled
    assert [type(c) for c, _, _ in by_seq[1:]] == [NewOrder] * 16
    assert ex.statistics()["processor"]["queued"] == [0, 0]


def test_one_lane_keeps_arrival_order_and_refuses_when_full() -> None:
    ex = Exchange([ABC], capacity=16, lanes=False)
    oid = rest(ex, 7, 200)
    seen: Seen = []
    for i in range(15):
        ex.submit(order(1, 10 + i), recorder(seen))
    ex.submit(Cancel(account=7, symbol="ABC", order_id=oid), recorder(seen))
    with pytest.raises(ExchangeBusy):
        ex.submit(Cancel(account=7, symbol="ABC", order_id=oid))
    ex.pump()
    assert type(max(seen, key=lambda s: s[0].seq)[0]) is Cancel


def test_own_cancel_is_held_back_behind_own_new_order() -> None:
    """Account 2 enters an order and cancels it by client order id before the sequencer got
    to the order: the cancel must not overtake it (it would find nothing). Account 3's
    cancel, with nothing of its own waiting, still overtakes account 2's order."""
    ex = Exchange([ABC])
    other = rest(ex, 3, 300)
    seen: Seen = []
    ex.submit(order(2, 50, clid="a"), recorder(seen))
    ex.submit(Cancel(account=2, symbol="ABC", orig_client_order_id="a"), recorder(seen))
    ex.submit(Cancel(account=3, symbol="ABC", order_id=other), recorder(seen))
    ex.pump()
    assert ex.held_back == 1
    seq = {(type(c).__name__, getattr(c, "account", 0)): c.seq for c, _, _ in seen}
    assert seq[("Cancel", 3)] < seq[("NewOrder", 2)] < seq[("Cancel", 2)]
    own_cancel = next(ev for c, ev, _ in seen if type(c) is Cancel and c.account == 2)
    assert type(own_cancel[0]) is Cancelled
    # The replies reach each submitter in its own submission order.
    assert [type(c) for c, _, _ in seen if getattr(c, "account", 0) == 2] == [NewOrder, Cancel]


def test_held_back_mass_cancel_catches_the_orders_sent_before_it() -> None:
    ex = Exchange([ABC])
    seen: Seen = []
    for i in range(3):
        ex.submit(order(2, 50 + i), recorder(seen))
    ex.submit(MassCancel(account=2, symbol="ABC"), recorder(seen))
    ex.pump()
    assert ex.held_back == 1
    mass = next(ev for c, ev, _ in seen if type(c) is MassCancel)
    assert sum(type(e) is Cancelled for e in mass) == 3
    assert not ex.engine.orders


def test_later_commands_never_overtake_an_earlier_cancel_under_the_starvation_bound() -> None:
    """Starvation bound 1, batches of 1: the normal lane is served while account 5's mass
    cancel still waits in the high lane. Account 5's new order (sent after the mass cancel)
    is deferred and sequenced right after it, so the mass cancel does not cancel it."""
    ex = Exchange([ABC], max_batch=1, starvation_bound=1)
    rest(ex, 5, 400)
    seen: Seen = []
    ex.submit(MassCancel(account=8), recorder(seen))
    ex.submit(MassCancel(account=9), recorder(seen))
    ex.submit(MassCancel(account=5), recorder(seen))
    ex.submit(order(5, 60), recorder(seen))
    answers: list[Any] = []
    ex.query(lambda: len(ex.reports.open_orders(5)), answers.append)
    ex.pump()
    assert ex.processor.statistics().starvation_overrides >= 1
    assert ex.deferred >= 1
    seq = {(type(c).__name__, getattr(c, "account", 0)): c.seq for c, _, _ in seen}
    assert seq[("MassCancel", 5)] < seq[("NewOrder", 5)]
    assert len(ex.engine.orders) == 1  # the new order rests; the old one is cancelled
    assert answers == [1]  # the query saw both commands sent before it
    assert ex.statistics()["processor"]["queued"] == [0, 0]


def test_halt_and_resume_are_not_overtaken_by_later_orders() -> None:
    ex = Exchange([ABC], max_batch=1, starvation_bound=1)
    seen: Seen = []
    ex.process_now(SetTradingStatus(symbol="ABC", halted=True))
    ex.submit(MassCancel(account=8), recorder(seen))
    ex.submit(SetTradingStatus(symbol="ABC", halted=False), recorder(seen))
    ex.submit(order(5, 60), recorder(seen))  # sent after the resume: must be accepted
    ex.pump()
    new = next(ev for c, ev, _ in seen if type(c) is NewOrder)
    assert type(new[0]) is Accepted


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["new", "cancel", "mass", "replace", "poll"]),
                          st.integers(1, 3), st.integers(0, 5)), min_size=1, max_size=60),
       st.integers(1, 3), st.integers(1, 2))
def test_per_account_order_and_replay_hold_for_any_interleaving(
        steps: list[tuple[str, int, int]], max_batch: int, bound: int) -> None:
    """Any mix of commands and partial polls: (1) each account's commands are sequenced in
    the order it sent them; (2) the sequenced commands, replayed on a fresh engine in
    sequence order, give exactly the live events (determinism); (3) nothing is lost."""
    ex = Exchange([ABC], max_batch=max_batch, starvation_bound=bound)
    seen: Seen = []
    sent: dict[int, list[Command]] = {1: [], 2: [], 3: []}
    accepted: dict[int, list[int]] = {1: [], 2: [], 3: []}
    buf: list[Command] = []  # sent in one submit_many (one socket read) now and then

    def flush() -> None:
        assert ex.submit_many(buf, recorder(seen)) == len(buf)
        buf.clear()

    for kind, account, k in steps:
        cmd: Command
        if kind == "poll":
            flush()
            ex.processor.poll(k + 1)
            for _c, events, _ in seen:
                if events and type(events[0]) is Accepted:
                    accepted[events[0].account].append(events[0].order_id)
            continue
        own = accepted[account]
        target = own[k % len(own)] if own else 0
        if kind == "new":
            cmd = order(account, 90 + k, BUY if k % 2 else SELL,
                        clid=f"{account}-{len(sent[account])}")
        elif kind == "cancel":
            cmd = Cancel(account=account, symbol="ABC", order_id=target)
        elif kind == "replace":
            cmd = Replace(account=account, symbol="ABC", order_id=target, price=80 + k)
        else:
            cmd = MassCancel(account=account)
        if k % 2:
            buf.append(cmd)
            if k == 5:
                flush()
        else:
            flush()
            ex.submit(cmd, recorder(seen))
        sent[account].append(cmd)
    flush()
    ex.pump()
    assert len(seen) == sum(len(v) for v in sent.values())
    for account, cmds in sent.items():
        assert [c.seq for c in cmds] == sorted(c.seq for c in cmds), account
        assert [c for c, _, _ in seen if getattr(c, "account", 0) == account] == cmds
    fresh = MatchingEngine([ABC])
    for c, events, _ in sorted(seen, key=lambda s: s[0].seq):
        assert fresh.process(c) == events
    ex.processor.check()


# -- firm deadline: stale orders ----------------------------------------------------------

def test_stale_order_is_rejected_unsequenced_and_never_journaled(tmp_path: Path) -> None:
    mono = Mono()
    ex = Exchange([ABC], journal_dir=tmp_path, segment_bytes=SEGMENT, monotonic=mono,
                  max_queue_ms=1000)
    seen: Seen = []
    oid = rest(ex, 1, 500)
    ex.submit(order(1, 100, clid="old"), recorder(seen))
    ex.submit(Replace(account=1, symbol="ABC", order_id=oid, price=501), recorder(seen))
    ex.submit(Cancel(account=2, symbol="ABC", order_id=999), recorder(seen))
    mono.advance_ms(1500)
    ex.submit(order(1, 101, clid="fresh"), recorder(seen))
    ex.pump()
    stale = [s for s in seen if s[0].seq == 0]
    assert [type(c) for c, _, _ in stale] == [NewOrder, Replace]
    for _c, events, reports in stale:
        assert type(events[0]) is Rejected and events[0].reason == RejectReason.STALE_ORDER
        assert [r.reason for r in reports] == [410] and reports[0].seq == 0
    assert stale[1][1][0].order_id == oid
    late_cancel = next(s for s in seen if type(s[0]) is Cancel)
    assert late_cancel[0].seq > 0  # cancels are never stale
    fresh = next(s for s in seen if type(s[0]) is NewOrder and s[0].seq)
    assert type(fresh[1][0]) is Accepted
    # Account 1's numbered reports stay gap-free: rest (1), fresh (2).
    assert [r.seq for r in fresh[2]] == [2]
    assert ex.stale_orders == 2 and ex.commands == 3
    ex.close()
    journaled = list(iter_commands(tmp_path))
    assert [type(c) for c in journaled] == [NewOrder, Cancel, NewOrder]
    assert [c.seq for c in journaled] == [1, 2, 3]
    assert len(seen) == 4  # every submitter was answered


def test_stale_check_sees_only_the_late_prefix_of_a_batch() -> None:
    mono = Mono()
    ex = Exchange([ABC], monotonic=mono, max_queue_ms=50)
    seen: Seen = []
    ex.submit_many([order(1, 10), order(1, 11)], recorder(seen))
    mono.advance_ms(30)
    ex.submit_many([order(1, 12)], recorder(seen))
    mono.advance_ms(30)  # the first two waited 60 ms, the third 30 ms
    ex.pump()
    assert [c.seq == 0 for c, _, _ in seen] == [True, True, False]
    assert ex.stale_orders == 2


def test_deadline_zero_disables_the_stale_check() -> None:
    mono = Mono()
    ex = Exchange([ABC], monotonic=mono, max_queue_ms=0)
    seen: Seen = []
    ex.submit(order(1, 10), recorder(seen))
    mono.advance_ms(10_000_000)
    ex.pump()
    assert seen[0][0].seq == 1 and ex.stale_orders == 0


# -- hard and soft deadlines: match and publish stages ------------------------------------

def test_match_and_publish_deadline_misses_are_counted_logged_and_exported(
        caplog: pytest.LogCaptureFixture) -> None:
    mono = Mono()
    slow_ms = [1.0]

    def wall() -> int:  # read once per command as it is sequenced: the match stage
        mono.advance_ms(slow_ms[0])
        return mono.now

    ex = Exchange([ABC], monotonic=mono, clock=wall, match_deadline_ms=100,
                  publish_deadline_ms=200)
    ex.process_now(order(1, 10))
    assert (ex.match_misses, ex.publish_misses) == (0, 0)
    slow_ms[0] = 150
    with caplog.at_level(logging.ERROR, logger="tickline.exchange"):
        ex.process_now(order(1, 10))
    slow_ms[0] = 1
    assert ex.match_misses == 1 and "hard deadline missed" in caplog.text
    slow_ms[0] = 150
    with caplog.at_level(logging.ERROR, logger="tickline.exchange"):
        ex.process_now(order(1, 10))  # within the same second: counted, not logged again
    slow_ms[0] = 1
    assert ex.match_misses == 2 and caplog.text.count("hard deadline missed") == 1
    mono.advance_ms(1000)
    slow_ms[0] = 150
    with caplog.at_level(logging.ERROR, logger="tickline.exchange"):
        ex.process_now(order(1, 10))
    slow_ms[0] = 1
    assert ex.match_misses == 3 and caplog.text.count("hard deadline missed") == 2
    ex.submit(order(1, 11), lambda *_: mono.advance_ms(250))  # a slow release stage
    ex.pump()
    assert ex.publish_misses == 1 and ex.match_misses == 3
    text = ex.prometheus()
    for name in ("match_deadline_misses", "publish_deadline_misses", "stale_orders",
                 "cancels_held_back"):
        assert f"tickline_exchange_{name}" in text
    assert "tickline_exchange_match_deadline_misses_total 3.0" in text
    assert "tickline_exchange_publish_deadline_misses_total 1.0" in text


def test_default_deadlines_never_fire_on_a_healthy_exchange() -> None:
    """The default deadlines (1 s queue, 100 ms match, 200 ms publish) against a healthy
    pace: every clock read is 10 µs after the previous one (a deterministic stand-in for
    fast work; wall-clock stalls of a shared machine are not what this test is about)."""
    mono = Mono()

    def tick() -> int:
        mono.now += 10_000
        return mono.now

    ex = Exchange([ABC], monotonic=tick, clock=tick)
    for i in range(2000):
        ex.submit(order(1 + i % 3, 90 + i % 20, BUY if i % 2 else SELL))
        if i % 100 == 99:
            oid = next(iter(ex.engine.orders), 0)
            ex.submit(Cancel(account=1, symbol="ABC", order_id=oid))
    ex.pump()
    assert (ex.stale_orders, ex.match_misses, ex.publish_misses) == (0, 0, 0)


# -- configuration ------------------------------------------------------------------------

def test_lanes_and_deadlines_sections_reach_the_server_exchange(tmp_path: Path) -> None:
    from tickline.config import load_config
    from tickline.server import Server

    path = tmp_path / "tickline.toml"
    path.write_text(f'[server]\njournal_dir = "{tmp_path / "j"}"\n'
                    "[lanes]\nenabled = false\nstarvation_bound = 3\nhigh_capacity = 256\n"
                    "[deadlines]\nmax_queue_ms = 250\nmatch_ms = 0\npublish_ms = 50.5\n")
    config = load_config(path)
    assert (config.lanes.enabled, config.lanes.starvation_bound) == (False, 3)
    server = Server(config)
    try:
        ex = server.exchange
        assert not ex.lanes and ex.processor.starvation_bound == 3
        assert ex.max_queue_ns == 250_000_000 and ex.publish_deadline_ns == 50_500_000
        assert ex.match_deadline_ns > 10**18  # 0 = off
    finally:
        server.exchange.close()


def test_default_config_enables_lanes_with_deadlines_that_do_not_fire() -> None:
    from tickline.config import default_config

    config = default_config()
    assert config.lanes.enabled and config.lanes.starvation_bound == 8
    d = config.deadlines
    assert (d.max_queue_ms, d.match_ms, d.publish_ms) == (1000.0, 100.0, 200.0)


@pytest.mark.parametrize(("text", "field"), [
    ("[lanes]\nstarvation_bound = 0\n", "lanes.starvation_bound"),
    ("[lanes]\nhigh_capacity = 1000\n", "lanes.high_capacity"),
    ("[deadlines]\nmax_queue_ms = -1\n", "deadlines.max_queue_ms"),
    ("[deadlines]\nmatch_ms = -5\n", "deadlines.match_ms"),
    ("[deadlines]\nhard_ms = 5\n", "hard_ms"),
])
def test_bad_lanes_and_deadlines_values_are_config_errors(tmp_path: Path, text: str,
                                                          field: str) -> None:
    from tickline.config import ConfigError, load_config

    path = tmp_path / "tickline.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load_config(path)


def test_one_read_with_cancels_is_split_into_the_lanes_keeping_each_accounts_order() -> None:
    ex = Exchange([ABC], capacity=64)
    other = rest(ex, 3, 300)
    for i in range(10):  # a flood ahead of the read
        ex.submit(order(1, 10 + i))
    seen: Seen = []
    read = [order(2, 50, clid="a"), Cancel(account=2, symbol="ABC", orig_client_order_id="a"),
            Cancel(account=3, symbol="ABC", order_id=other), order(3, 51)]
    assert ex.submit_many(read, recorder(seen)) == 4
    assert ex.processor.statistics().queued == (1, 13)
    ex.pump()
    seq = {(type(c).__name__, getattr(c, "account", 0)): c.seq for c, _, _ in seen}
    assert seq[("Cancel", 3)] == 2  # ahead of the flood and of the read's earlier commands
    assert seq[("NewOrder", 2)] < seq[("Cancel", 2)] < seq[("NewOrder", 3)]
    assert all(type(ev[0]) in (Accepted, Cancelled) for _, ev, _ in seen)


def test_a_read_that_does_not_fit_is_accepted_as_a_prefix() -> None:
    ex = Exchange([ABC], capacity=4)
    for i in range(3):
        ex.submit(order(1, 10 + i))
    read = [Cancel(account=5, symbol="ABC", order_id=1), order(2, 50), order(2, 51),
            Cancel(account=6, symbol="ABC", order_id=1)]
    assert ex.submit_many(read) == 2  # the second new order meets the full lane
    assert ex.processor.statistics().queued == (1, 4)


def test_the_cancel_lane_has_its_own_smaller_capacity() -> None:
    ex = Exchange([ABC], capacity=64, high_capacity=4)
    assert ex.processor.lane(0).ring.capacity == 4 and ex.processor.lane(1).ring.capacity == 64
    for _ in range(4):
        ex.submit(MassCancel(account=1))
    with pytest.raises(ExchangeBusy):  # the cancel lane is bounded too
        ex.submit(MassCancel(account=1))
    ex.submit(order(2, 10))  # the normal lane still has room
    assert ex.pump() == 5
