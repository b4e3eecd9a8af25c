"""`tickline demo` runs a live market end to end: real sockets, a real journal, a clean stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tickline.demo import DemoCounters, _view, demo, demo_config
from tickline.journal import replay


def test_demo_trades_over_the_network_and_stops_cleanly(tmp_path: Path) -> None:
    config = demo_config(str(tmp_path / "journal"), port=0, http_port=0)
    server = asyncio.run(demo(config, duration=2.0, makers=2, takers=1, pace=0.005, seed=7,
                              show=False))
    engine = server.exchange.engine
    assert engine.last_seq > 100  # orders flowed through the gateway and the loop
    assert engine.next_trade_id > 1  # and traded
    # the journal was synced and closed on stop, and replays to the same state
    replayed, _report = replay(tmp_path / "journal")
    assert replayed.digest() == engine.digest()


def test_demo_traders_use_icebergs_and_stops_and_market_data_hides_the_reserve(
        tmp_path: Path) -> None:
    config = demo_config(str(tmp_path / "journal"), port=0, http_port=0)
    counters = DemoCounters()
    server = asyncio.run(demo(config, duration=2.0, makers=2, takers=2, pace=0.004, seed=3,
                              show=False, counters=counters))
    engine = server.exchange.engine
    assert counters.icebergs > 5 and counters.stops > 5
    assert counters.stops_triggered > 0
    # armed stops are kept few: at most max_armed (4) per taker
    assert sum(len(b) for b in engine.stops.values()) <= 2 * 4
    # the market data equals the engine's *visible* book: slices only, no reserve
    server.exchange.publisher.check(engine.books)
    view = _view(server, 0.0, counters)
    assert "icebergs entered" in str(view.caption)
    replayed, _report = replay(tmp_path / "journal")
    assert replayed.digest() == engine.digest()
