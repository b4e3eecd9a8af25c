"""The split market-data modules: the per-event dispatch covers every engine event type,
every public name is still importable from the old places, bars and their exact VWAP."""

from __future__ import annotations

from fractions import Fraction

import msgspec
import pytest

import tickline.stream as stream_pkg
import tickline.stream.marketdata as marketdata
import tickline.stream.publisher as publisher_mod
from tickline.matching import (
    BUY,
    SELL,
    Command,
    Instrument,
    MatchingEngine,
    NewOrder,
    TimeTick,
)
from tickline.matching.events import (
    EVENT_TYPES,
    Accepted,
    AccountStatusChanged,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    MassCancelled,
    Rejected,
    Replaced,
    StatusChanged,
    Trade,
    Triggered,
)
from tickline.stream import (
    AccountStatusUpdate,
    Bar,
    Bus,
    L3Reason,
    MarketDataPublisher,
    OrderDeleted,
    window_label,
)
from tickline.stream.bars import BarClock, OpenBar


def test_dispatch_table_has_a_handler_for_every_engine_event_type() -> None:
    md = MarketDataPublisher(Bus(), ["AAA"])
    assert md.handled_event_types() == frozenset(EVENT_TYPES)
    assert len(EVENT_TYPES) == 11  # a new event type: give it a handler, then update this


def test_a_new_event_type_without_a_handler_is_refused_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Halted(msgspec.Struct, tag=99, array_like=True):
        symbol: str

    monkeypatch.setattr(publisher_mod, "EVENT_TYPES", (*EVENT_TYPES, Halted))
    with pytest.raises(TypeError, match=r"no handler for event types \['Halted'\]"):
        MarketDataPublisher(Bus(), ["AAA"])


def test_something_that_is_not_an_engine_event_is_a_type_error() -> None:
    class Stray(msgspec.Struct):
        symbol: str

    md = MarketDataPublisher(Bus(), ["AAA"])
    with pytest.raises(TypeError, match="not an engine event: Stray"):
        md.publish(1, 1, [Stray("AAA")])  # type: ignore[list-item]


def test_every_event_type_goes_through_its_handler() -> None:
    """One event of each kind, hand-made, in one command: each handler's effect shows."""
    bus = Bus()
    everything = bus.subscribe(">")
    md = MarketDataPublisher(bus, ["AAA"])
    events: list[Event] = [
        Accepted(1, 7, "a", "AAA", BUY, 1, 1, 100, 5),
        LevelChanged("AAA", BUY, 100, 5, 1),
        Accepted(2, 8, "b", "AAA", SELL, 1, 1, 101, 4),
        LevelChanged("AAA", SELL, 101, 4, 1),
        Rejected(9, "c", "AAA", 0, 1, "bad"),
        StatusChanged("AAA", True),
    ]
    seen = {type(e) for e in events}
    md.publish(1, 10, events)
    events2: list[Event] = [
        Trade(1, "AAA", 100, 2, SELL, 1, 7, 3, 3, 9, 0),
        LevelChanged("AAA", BUY, 100, 3, 1),
        Replaced(2, 8, "b2", "AAA", SELL, 101, 3, 3, True),
        LevelChanged("AAA", SELL, 101, 3, 1),
        Cancelled(1, 7, "AAA", BUY, 100, 3, 1),
        LevelChanged("AAA", BUY, 100, 0, 0),
        Expired(2, 8, "AAA", SELL, 101, 3),
        LevelChanged("AAA", SELL, 101, 0, 0),
        Triggered(3, 7, "t", "AAA", BUY, 2, 0, 99, 2),  # a stop-market enters the book ...
        Cancelled(3, 7, "AAA", BUY, 0, 2, 4),  # ... and its remainder is cancelled
        MassCancelled(7, "AAA", 0, 30, 0),
        AccountStatusChanged(7, True, 0),
    ]
    seen |= {type(e) for e in events2}
    assert seen == set(EVENT_TYPES)
    md.publish(2, 20, events2)
    msgs = everything.drain()
    got = [(type(m).__name__, getattr(m, "order_id", None)) for m in msgs]
    names = [n for n, _ in got]
    assert ("OrderAdded", 1) in got and ("OrderAdded", 2) in got
    assert "StatusUpdate" in names and "TradeTick" in names
    assert ("OrderExecuted", 1) in got and ("OrderModified", 2) in got
    assert [(m.order_id, m.reason) for m in msgs if type(m) is OrderDeleted] == [
        (1, L3Reason.CANCELLED), (2, L3Reason.EXPIRED)]
    assert md.l3_snapshot("AAA").orders == []
    assert md.depth_snapshot("AAA").bids == [] and md.depth_snapshot("AAA").asks == []
    assert md.statistics().events == len(events) + len(events2)


def test_every_public_name_is_importable_from_the_package_and_marketdata() -> None:
    """The names that lived in ``stream/marketdata.py`` before the split are still there
    and in ``tickline.stream``, as the very same objects."""
    before_split = {
        "Bar", "Bbo", "DepthBook", "DepthDelta", "DepthSnapshot", "ExecKind", "ExecReport",
        "L3Reason", "L3Snapshot", "MarketDataMessage", "MarketDataPublisher", "OrderAdded",
        "OrderDeleted", "OrderExecuted", "OrderModified", "PublisherStatistics",
        "SequenceTracker", "StatusUpdate", "TradeTick", "window_label",
    }
    assert before_split <= set(marketdata.__all__)
    assert before_split <= set(stream_pkg.__all__)
    for name in marketdata.__all__:
        if name in stream_pkg.__all__:
            assert getattr(stream_pkg, name) is getattr(marketdata, name), name


@pytest.mark.parametrize(("width", "label"), [
    (1_000_000_000, "1s"), (250_000_000, "250ms"), (300_000_000_000, "5m"),
    (3_600_000_000_000, "1h"), (10_000, "10us"), (1_500, "1500ns"),
])
def test_window_label(width: int, label: str) -> None:
    assert window_label(width) == label


@pytest.mark.parametrize("width", [0, -5])
def test_bad_bar_windows_are_rejected_with_the_value(width: int) -> None:
    with pytest.raises(ValueError, match=f"positive number of ns, got {width}"):
        window_label(width)
    with pytest.raises(ValueError, match=f"got {width}"):
        MarketDataPublisher(Bus(), ["AAA"], bar_windows=(width,))
    with pytest.raises(ValueError, match="duplicates"):
        MarketDataPublisher(Bus(), ["AAA"], bar_windows=(1_000, 1_000))


def test_bar_clock_opens_closes_and_only_builds_subscribed_bars() -> None:
    clock = BarClock()
    a, b = OpenBar("AAA", 1_000), OpenBar("AAA", 3_000)
    clock.trade([a, b], 1_500, 100, 2)
    clock.trade([a, b], 1_900, 103, 1)
    assert clock.next_close == 2_000
    clock.close(1_999, lambda topic: True)  # not yet: [1000, 2000) is still open
    assert clock.take() == {} and len(clock.open_bars) == 2
    clock.close(2_100, lambda topic: True)
    assert clock.next_close == 3_000
    clock.trade([a, b], 2_100, 99, 3)  # opens the next 1us window
    assert clock.next_close == 3_000
    closed = clock.take()
    assert clock.take() == {}
    (bar,) = closed["bars.AAA.1us"]
    assert (bar.start, bar.end, bar.open, bar.high, bar.low, bar.close) == (
        1_000, 2_000, 100, 103, 100, 103)
    assert (bar.volume, bar.notional, bar.trades, bar.seq) == (3, 303, 2, 1)
    assert bar.vwap == 101
    clock.close(10_000, lambda topic: topic.endswith(".3us"))  # nobody on 1us now
    closed = clock.take()
    assert list(closed) == ["bars.AAA.3us"]
    assert a.seq == 1 and a.count == 0 and clock.open_bars == []
    (big,) = closed["bars.AAA.3us"]
    assert big.vwap == Fraction(200 + 103 + 297, 6)


def test_bar_vwap_is_exact_where_a_float_is_not() -> None:
    """Prices near 2**53 units: the float ratio loses the last units, the Fraction does not,
    and the bar carries no float on the wire."""
    price = (1 << 53) + 1
    engine = MatchingEngine([Instrument(symbol="AAA", max_price=1 << 60)])
    bus = Bus()
    bars = bus.subscribe("bars.>")
    md = MarketDataPublisher(bus, ["AAA"], bar_windows=(1_000,))
    cmds: list[Command] = [
        NewOrder(seq=1, ts=10, account=1, symbol="AAA", side=SELL, price=price, quantity=3),
        NewOrder(seq=2, ts=20, account=2, symbol="AAA", side=BUY, price=price, quantity=3),
        NewOrder(seq=3, ts=30, account=1, symbol="AAA", side=SELL, price=price + 1, quantity=1),
        NewOrder(seq=4, ts=40, account=2, symbol="AAA", side=BUY, price=price + 1, quantity=1),
        TimeTick(seq=5, ts=2_000),
    ]
    for cmd in cmds:
        md.publish(cmd.seq, cmd.ts, engine.process(cmd))
    (bar,) = bars.drain()
    assert type(bar) is Bar
    assert bar.notional == 3 * price + price + 1 and bar.volume == 4
    assert bar.vwap == Fraction(4 * price + 1, 4)
    assert float(bar.notional) / bar.volume != bar.vwap  # what the float field gave
    wire = msgspec.json.decode(msgspec.json.encode(bar))
    assert "vwap" not in wire and all(type(v) is not float for v in wire.values())


def test_account_level_events_publish_only_the_kill_switch_on_status() -> None:
    """Mass-cancel summaries publish nothing (their Cancelled events did); the kill switch
    is an admin action and shows on the status stream (issue 9 item 7)."""
    bus = Bus()
    sub = bus.subscribe(">", admin=True)
    md = MarketDataPublisher(bus, ["AAA"])
    md.publish(1, 1, [MassCancelled(7, "", 0, 30, 0), MassCancelled(7, "AAA", 0, 30, 0)])
    assert sub.drain() == []
    md.publish(2, 2, [AccountStatusChanged(7, False, 0)])
    assert sub.drain() == [AccountStatusUpdate(1, 2, "AAA", 7, False, 0)]
    assert md.statistics().events == 3
