"""``tickline demo``: a live local market with simulated traders, in one command.

Starts a :class:`~tickline.server.Server` on the embedded defaults (demo instruments and
accounts, a fresh journal in a temporary directory unless ``--journal-dir`` is given) and runs
simulated traders against it:

* **market makers** (accounts ``mm1``..``mm4``) keep a ladder of quotes on both sides of a
  fair value that follows a random walk, and move (cancel/replace) one quote at a time as the
  fair value drifts;
* **takers** (``alice``, ``bob``) send IOC and market orders that cross the spread, and now
  and then a limit order that rests near the touch.

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
class MakerState:
    quotes: dict[tuple[int, int], int] = field(default_factory=dict)  # (side, level) -> id


async def run_maker(client: Client, markets: list[Market], levels: int, rng: random.Random,
                    pace: float, stop: asyncio.Event) -> None:
    """Quote ``levels`` prices per side per market; move one quote per step."""
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
        quantity = inst.qty_to_str(rng.randint(1, 20) * _lot(inst))
        order_id = state.quotes.get((side, level))
        try:
            if order_id is None:
                ack = await client.new_order(symbol, side, quantity, inst.price_to_str(price))
                if ack.leaves:
                    state.quotes[(side, level)] = ack.order_id
            else:
                await client.replace(symbol, order_id, price=inst.price_to_str(price))
        except OrderRejectedError:
            state.quotes.pop((side, level), None)  # filled or gone: quote afresh next time
        await _pace(pace, rng, stop)


async def run_taker(client: Client, markets: list[Market], rng: random.Random, pace: float,
                    stop: asyncio.Event) -> None:
    """Cross the spread with IOC and market orders; sometimes rest a limit near the touch."""
    while not stop.is_set():
        market = rng.choice(markets)
        symbol = market.instrument.symbol
        side = rng.choice((BUY, SELL))
        inst = market.instrument
        quantity = inst.qty_to_str(rng.randint(1, 15) * _lot(inst))
        roll = rng.random()
        with contextlib.suppress(OrderRejectedError):
            if roll < 0.15:
                await client.new_order(symbol, side, quantity, order_type="market", tif="ioc")
            elif roll < 0.75:
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


def _view(server: Server, started: float) -> Table:
    ex = server.exchange
    elapsed = max(1e-9, time.monotonic() - started)
    table = Table(title=f"tickline demo — dashboard: http://127.0.0.1:{server.http_port}/   "
                        f"(binary port {server.port}; Ctrl-C to stop)")
    for col in ("symbol", "bid", "bid qty", "ask", "ask qty", "orders"):
        table.add_column(col, justify="right")
    for symbol, book in ex.engine.books.items():
        inst = book.instrument
        bid, ask = book.best_bid(), book.best_ask()
        resting = sum(len(lv.orders) for side in (book.bids, book.asks)
                      for lv in side.levels.values())
        table.add_row(
            symbol,
            inst.price_to_str(bid[0]) if bid else "-", inst.qty_to_str(bid[1]) if bid else "-",
            inst.price_to_str(ask[0]) if ask else "-", inst.qty_to_str(ask[1]) if ask else "-",
            str(resting),
        )
    table.caption = (f"{ex.commands:,} commands ({ex.commands / elapsed:,.0f}/s), "
                     f"{ex.engine.next_trade_id - 1:,} trades, seq {ex.engine.last_seq:,}")
    return table


async def demo(config: ServerConfig, *, duration: float | None, makers: int, takers: int,
               pace: float, seed: int, show: bool = True) -> Server:
    """Run the server and the simulated traders until ``duration`` or SIGINT/SIGTERM."""
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
            run_maker(client, markets, 5, random.Random(rng.random()), pace, stop)))
    for key in taker_keys:
        client = await Client.connect("127.0.0.1", server.port, key)
        client.on_report = _ignore
        clients.append(client)
        tasks.append(asyncio.create_task(
            run_taker(client, markets, random.Random(rng.random()), pace * 4, stop)))
    started = time.monotonic()
    console = Console()
    deadline = None if duration is None else started + duration
    with Live(_view(server, started), console=console, refresh_per_second=4,
              transient=False) as live:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await stop.wait()
            if show:
                live.update(_view(server, started))
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
