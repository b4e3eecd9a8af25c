"""``tickline demo``: a live local market with simulated traders, in one command.

Starts a :class:`~tickline.server.Server` on the embedded defaults (demo instruments and
accounts, a fresh journal in a temporary directory unless ``--journal-dir`` is given) and runs
simulated traders against it:

* **market makers** (accounts ``mm1``..``mm4``) keep a ladder of quotes on both sides of a
  fair value that follows a random walk, and move (cancel/replace) one quote at a time as the
  fair value drifts;
  about one new quote in four is an **iceberg** (a display slice of a quarter of it, the rest
  hidden in reserve and refilled at the back of the level as the slice fills);
* **takers** (``alice``, ``bob``) send IOC and market orders that cross the spread, now and
  then a limit order that rests near the touch, and **stop** / **stop-limit** orders a few
  ticks away from the fair value (at most a few armed at a time: the oldest is cancelled).

:class:`DemoCounters` counts icebergs and stops placed and stops triggered; the terminal also
shows the live icebergs and their hidden reserve, and the armed stops, from the engine. The
dashboard shows depth from the market data, which carries only each iceberg's visible slice:
the reserve is never on show (it is in the ``hidden`` column of the terminal only).

The traders connect through the binary gateway like any client (:mod:`tickline.client`),
so the demo exercises the whole path: gateway → sequencer → engine → journal → market data
→ dashboard. The terminal shows the top of each book and the rates; the browser shows the
dashboard at ``http://127.0.0.1:<http_port>/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from tickline.client import Client, OrderRejectedError
from tickline.config import ServerConfig, load_config
from tickline.gateway import protocol as p
from tickline.matching import BUY, SELL, Instrument
from tickline.server import Server

START_PRICES = {"AAPL": "190.00", "MSFT": "420.00", "BTC-USD": "65000.00"}


@dataclass
class Market:
    """The simulated fair value of one instrument, in integer price units."""

    instrument: Instrument
    fair: int
    rng: random.Random
    ticks_per_step: int = 1

    def step(self) -> None:
        tick = self.instrument.tick_size
        self.fair += self.rng.choice((-1, 0, 0, 1)) * tick * self.ticks_per_step
        self.fair = max(self.fair, 20 * tick)

    def price(self, offset_ticks: int) -> int:
        tick = self.instrument.tick_size
        return (self.fair // tick + offset_ticks) * tick


@dataclass
class DemoCounters:
    """What the simulated traders did with the order types beyond limit/market, so one can
    see them work: icebergs entered, stops entered, stops triggered (on arrival or later,
    from the ``OrderTriggered`` reports), armed stops the takers cancelled to keep few."""

    icebergs: int = 0
    stops: int = 0
    stops_triggered: int = 0
    stops_cancelled: int = 0

    def on_report(self, report: object) -> None:
        """An unsolicited report of a taker: count a stop triggered by someone else's
        trade."""
        if isinstance(report, p.OrderTriggered):
            self.stops_triggered += 1


@dataclass
class MakerState:
    quotes: dict[tuple[int, int], int] = field(default_factory=dict)  # (side, level) -> id


async def run_maker(client: Client, markets: list[Market], levels: int, rng: random.Random,
                    pace: float, stop: asyncio.Event,
                    counters: DemoCounters | None = None) -> None:
    """Quote ``levels`` prices per side per market; move one quote per step. About one new
    quote in four is an iceberg showing a quarter of its quantity."""
    counters = counters if counters is not None else DemoCounters()
    states = {m.instrument.symbol: MakerState() for m in markets}
    while not stop.is_set():
        market = rng.choice(markets)
        symbol = market.instrument.symbol
        state = states[symbol]
        side = rng.choice((BUY, SELL))
        level = rng.randrange(levels)
        offset = 1 + level + rng.randrange(2)
        price = market.price(-offset if side == BUY else offset)
        inst = market.instrument
        lots = rng.randint(1, 20)
        quantity = inst.qty_to_str(lots * _lot(inst))
        order_id = state.quotes.get((side, level))
        try:
            if order_id is None:
                if lots >= 4 and rng.random() < 0.25:  # an iceberg: a quarter on show
                    display = inst.qty_to_str(lots // 4 * _lot(inst))
                    ack = await client.new_order(symbol, side, quantity,
                                                 inst.price_to_str(price),
                                                 display_quantity=display)
                    counters.icebergs += 1
                else:
                    ack = await client.new_order(symbol, side, quantity,
                                                 inst.price_to_str(price))
                if ack.leaves:
                    state.quotes[(side, level)] = ack.order_id
            else:
                await client.replace(symbol, order_id, price=inst.price_to_str(price))
        except OrderRejectedError:
            state.quotes.pop((side, level), None)  # filled or gone: quote afresh next time
        await _pace(pace, rng, stop)


async def run_taker(client: Client, markets: list[Market], rng: random.Random, pace: float,
                    stop: asyncio.Event, counters: DemoCounters | None = None,
                    max_armed: int = 4) -> None:
    """Cross the spread with IOC and market orders; sometimes rest a limit near the touch;
    sometimes arm a stop (market, IOC) or stop-limit (GTC) 2-4 ticks beyond the fair value,
    cancelling the oldest when more than ``max_armed`` may still be armed."""
    counters = counters if counters is not None else DemoCounters()
    armed: list[tuple[str, int]] = []
    while not stop.is_set():
        market = rng.choice(markets)
        symbol = market.instrument.symbol
        side = rng.choice((BUY, SELL))
        inst = market.instrument
        quantity = inst.qty_to_str(rng.randint(1, 15) * _lot(inst))
        roll = rng.random()
        with contextlib.suppress(OrderRejectedError):
            if roll < 0.10:
                away = rng.randint(2, 4)
                trigger = market.price(away if side == BUY else -away)
                limit = rng.random() < 0.5
                ack = await client.new_order(
                    symbol, side, quantity,
                    inst.price_to_str(market.price(away + 1 if side == BUY else -away - 1))
                    if limit else None,
                    order_type="stop_limit" if limit else "stop", tif="gtc" if limit else "ioc",
                    stop_price=inst.price_to_str(trigger))
                counters.stops += 1
                if ack.triggered is not None:
                    counters.stops_triggered += 1
                elif ack.status == "new":
                    armed.append((symbol, ack.order_id))
                while len(armed) > max_armed:
                    old_symbol, old_id = armed.pop(0)
                    with contextlib.suppress(OrderRejectedError):  # triggered meanwhile
                        await client.cancel(old_symbol, old_id)
                        counters.stops_cancelled += 1
            elif roll < 0.22:
                await client.new_order(symbol, side, quantity, order_type="market", tif="ioc")
            elif roll < 0.77:
                cross = inst.price_to_str(market.price(2 if side == BUY else -2))
                await client.new_order(symbol, side, quantity, cross, tif="ioc")
            else:
                near = inst.price_to_str(market.price(-1 if side == BUY else 1))
                await client.new_order(symbol, side, quantity, near,
                                       tif="ioc" if rng.random() < 0.5 else "gtc")
        await _pace(pace, rng, stop)


async def run_fair_values(markets: list[Market], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for market in markets:
            market.step()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await stop.wait()


async def _pace(mean_seconds: float, rng: random.Random, stop: asyncio.Event) -> None:
    """Wait an exponential interval (a Poisson process of orders), or until stopped."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(rng.expovariate(1.0 / mean_seconds)):
            await stop.wait()


def _view(server: Server, started: float, counters: DemoCounters | None = None) -> Table:
    ex = server.exchange
    elapsed = max(1e-9, time.monotonic() - started)
    table = Table(title=f"tickline demo — dashboard: http://127.0.0.1:{server.http_port}/   "
                        f"(binary port {server.port}; Ctrl-C to stop)")
    for col in ("symbol", "bid", "bid qty", "ask", "ask qty", "orders", "icebergs", "hidden",
                "stops"):
        table.add_column(col, justify="right")
    icebergs: dict[str, list[int]] = {}
    for o in ex.engine.orders.values():
        if o.display:
            icebergs.setdefault(o.symbol, []).append(o.hidden)
    for symbol, book in ex.engine.books.items():
        inst = book.instrument
        bid, ask = book.best_bid(), book.best_ask()
        resting = sum(len(lv.orders) for side in (book.bids, book.asks)
                      for lv in side.levels.values())
        table.add_row(
            symbol,
            inst.price_to_str(bid[0]) if bid else "-", inst.qty_to_str(bid[1]) if bid else "-",
            inst.price_to_str(ask[0]) if ask else "-", inst.qty_to_str(ask[1]) if ask else "-",
            str(resting), str(len(icebergs.get(symbol, ()))),
            inst.qty_to_str(sum(icebergs.get(symbol, ()))),
            str(len(ex.engine.stops.get(symbol, ()))),
        )
    table.caption = (f"{ex.commands:,} commands ({ex.commands / elapsed:,.0f}/s), "
                     f"{ex.engine.next_trade_id - 1:,} trades, seq {ex.engine.last_seq:,}")
    if counters is not None:
        table.caption += (f"; icebergs entered {counters.icebergs:,}, stops entered "
                          f"{counters.stops:,}, triggered {counters.stops_triggered:,}")
    return table


async def demo(config: ServerConfig, *, duration: float | None, makers: int, takers: int,
               pace: float, seed: int, show: bool = True,
               counters: DemoCounters | None = None) -> Server:
    """Run the server and the simulated traders until ``duration`` or SIGINT/SIGTERM;
    ``counters`` (a fresh one if None) counts their icebergs and stops."""
    counters = counters if counters is not None else DemoCounters()
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    rng = random.Random(seed)
    instruments = {i.symbol: i for i in config.instruments}
    markets = [
        Market(inst, inst.price_from_str(START_PRICES.get(symbol, "100.00")),
               random.Random(rng.random()))
        for symbol, inst in instruments.items()
    ]
    keys = {a.name: a.key for a in config.accounts}
    maker_keys = [keys[n] for n in ("mm1", "mm2", "mm3", "mm4") if n in keys][:makers]
    taker_keys = [keys[n] for n in ("alice", "bob", "demo") if n in keys][:takers]
    clients: list[Client] = []
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(run_fair_values(markets, stop))]
    for key in maker_keys:
        client = await Client.connect("127.0.0.1", server.port, key)
        client.on_report = _ignore  # passive fills: the makers simply quote afresh
        clients.append(client)
        tasks.append(asyncio.create_task(
            run_maker(client, markets, 5, random.Random(rng.random()), pace, stop, counters)))
    for key in taker_keys:
        client = await Client.connect("127.0.0.1", server.port, key)
        client.on_report = counters.on_report  # stops triggered by others' trades
        clients.append(client)
        tasks.append(asyncio.create_task(
            run_taker(client, markets, random.Random(rng.random()), pace * 4, stop,
                      counters)))
    started = time.monotonic()
    console = Console()
    deadline = None if duration is None else started + duration
    with Live(_view(server, started, counters), console=console, refresh_per_second=4,
              transient=False) as live:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await stop.wait()
            if show:
                live.update(_view(server, started, counters))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for client in clients:
        client.close()
        with contextlib.suppress(Exception):
            await client.wait_closed()
    await server.stop()
    return server


def _lot(inst: Instrument) -> int:
    """A sensible trading unit: the lot, or a hundredth of a whole unit if that is bigger
    (0.01 BTC rather than 0.0001)."""
    hundredth: int = 10 ** max(0, inst.qty_decimals - 2)
    return max(inst.lot_size, hundredth)


def _ignore(_report: object) -> None:
    return None


def demo_config(journal_dir: str | None, port: int, http_port: int) -> ServerConfig:
    """The embedded defaults, a fresh journal directory, durability ``batch``."""
    directory = journal_dir or str(Path(tempfile.mkdtemp(prefix="tickline-demo-")) / "journal")
    return load_config(None, port=port, http_port=http_port, journal_dir=directory)
