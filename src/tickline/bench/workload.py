"""Deterministic benchmark workloads.

:func:`exchange_core_mix` reproduces the command mix of the published exchange-core
benchmark (DESIGN.md "Workloads"): per symbol about 1,000 resting orders kept active across
about 750 price levels; commands are 9% new GTC limit orders, 3% IOC orders, 6% cancels and
82% moves (price changes of resting orders); about 6% of commands trade.

Commands are generated from a seed *before* timing starts. To produce only valid cancels and
moves the generator tracks live orders by running the commands through a
:class:`~tickline.matching.MatchingEngine` as it goes; every engine run over the same
commands is identical (the engine is deterministic), so a benchmark that replays them on a
fresh engine sees the same book, the same trades and the same ids.

``stops``/``icebergs`` (issue 11's ``--mix``) add stop orders and iceberg orders on top of
the mix, as fractions of the timed commands: a stop (half stop-market, half stop-limit) is
an extra new order 1-5 ticks beyond the last trade price; an iceberg is a new GTC order of
the mix given a display quantity of a quarter of its size. Their decisions come from a
random stream of their own, so ``stops=icebergs=0`` is exactly the plain mix.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    EngineConfig,
    Instrument,
    MatchingEngine,
    NewOrder,
    Replace,
    TimeInForce,
    Trade,
)
from tickline.matching.types import STOP, STOP_LIMIT

GTC = int(TimeInForce.GTC)
IOC = int(TimeInForce.IOC)

NS_PER_COMMAND = 1_000  # engine time advances 1 µs per command


@dataclass
class Workload:
    """A generated, sequenced command stream and what it contains."""

    instruments: list[Instrument]
    prefill: list[Command]
    commands: list[Command]
    counts: dict[str, int] = field(default_factory=dict)
    trading_commands: int = 0
    resting_at_end: int = 0

    @property
    def trade_fraction(self) -> float:
        """Fraction of the timed commands that caused at least one trade."""
        return self.trading_commands / max(1, len(self.commands))

    def engine(self) -> MatchingEngine:
        """A fresh engine configured exactly as the one the workload was generated with."""
        return MatchingEngine(self.instruments, EngineConfig())


@dataclass
class _SymbolState:
    symbol: str
    mid: int
    live: list[int] = field(default_factory=list)
    index: dict[int, int] = field(default_factory=dict)

    def add(self, order_id: int) -> None:
        self.index[order_id] = len(self.live)
        self.live.append(order_id)

    def discard(self, order_id: int) -> None:
        pos = self.index.pop(order_id, None)
        if pos is None:
            return
        last = self.live.pop()
        if last != order_id:
            self.live[pos] = last
            self.index[last] = pos


def exchange_core_mix(
    commands: int,
    seed: int = 1,
    symbols: int = 1,
    *,
    resting: int = 1_000,
    levels: int = 750,
    accounts: int = 1_000,
    stops: float = 0.0,
    icebergs: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> Workload:
    """Generate ``commands`` commands of the exchange-core mix over ``symbols`` symbols.

    ``prefill`` (``resting`` passive GTC orders per symbol) builds the initial books and is
    not part of the timed stream. ``levels``: resting prices are spread over about ``levels``
    ticks on each side of the mid. ``stops``/``icebergs``: see the module doc. ``progress``
    is called with the number of commands generated so far, every 10,000.
    """
    rng = random.Random(seed)
    extra = random.Random(seed * 7919 + 1)  # stops and icebergs only
    iceberg_share = icebergs / 0.09  # of the mix's new GTC orders (9% of commands)
    tick = 1
    instruments = [
        Instrument(symbol=f"S{i:03d}" if symbols > 1 else "XCH", tick_size=tick, lot_size=1,
                   price_decimals=2)
        for i in range(symbols)
    ]
    engine = MatchingEngine(instruments, EngineConfig())
    states = [_SymbolState(inst.symbol, mid=100_000) for inst in instruments]
    half = levels  # prices spread over 2x levels ticks: ~1,000 orders occupy ~levels of them
    seq = 0

    def passive_price(state: _SymbolState, side: int) -> int:
        """A price that does not cross: below the best ask for a buy, above the best bid
        for a sell, spread uniformly over ``levels`` ticks from the mid."""
        offset = rng.randint(1, half) * tick
        book = engine.books[state.symbol]
        if side == BUY:
            ask = book.best_ask()
            ref = state.mid if ask is None else min(state.mid, ask[0])
            return max(tick, ref - offset)
        bid = book.best_bid()
        ref = state.mid if bid is None else max(state.mid, bid[0])
        return ref + offset

    def crossing_price(state: _SymbolState, side: int) -> int:
        book = engine.books[state.symbol]
        best = book.best_ask() if side == BUY else book.best_bid()
        if best is None:
            return passive_price(state, side)
        walk = rng.randint(0, 3) * tick
        return best[0] + walk if side == BUY else best[0] - walk

    def apply(cmd: Command, state: _SymbolState) -> bool:
        events = engine.process(cmd)
        traded = False
        for event in events:
            if type(event) is Trade:
                traded = True
                if event.maker_leaves == 0:
                    state.discard(event.maker_order_id)
        live = engine.orders
        for event in events:
            order_id = getattr(event, "order_id", 0)
            if order_id and order_id not in live:
                state.discard(order_id)
        if type(cmd) is NewOrder and not cmd.stop_price:  # stops are never cancel targets
            new_id = engine.next_order_id - 1
            if new_id in live and new_id not in state.index:
                state.add(new_id)
        return traded

    prefill: list[Command] = []
    for state in states:
        for _ in range(resting):
            seq += 1
            side = BUY if rng.random() < 0.5 else SELL
            order = NewOrder(seq=seq, ts=seq * NS_PER_COMMAND, account=rng.randint(1, accounts),
                             symbol=state.symbol, side=side, price=passive_price(state, side),
                             quantity=rng.randint(1, 100), tif=GTC)
            prefill.append(order)
            apply(order, state)

    out: list[Command] = []
    counts = {"new_gtc": 0, "ioc": 0, "cancel": 0, "move": 0, "stop": 0, "iceberg": 0}
    trading = 0
    for i in range(commands):
        seq += 1
        ts = seq * NS_PER_COMMAND
        state = states[rng.randrange(symbols)] if symbols > 1 else states[0]
        if i % 100 == 99:  # the mid follows the market, with a little drift of its own
            book = engine.books[state.symbol]
            bid, ask = book.best_bid(), book.best_ask()
            if bid is not None and ask is not None:
                state.mid = (bid[0] + ask[0]) // 2
            state.mid += rng.choice((-tick, 0, tick))
        if stops and extra.random() < stops:
            last = engine.last_prices.get(state.symbol, 0)
            if last:
                side = BUY if extra.random() < 0.5 else SELL
                away = extra.randint(1, 5) * tick
                stop = last + away if side == BUY else max(tick, last - away)
                limit = extra.random() < 0.5
                stop_cmd = NewOrder(seq=seq, ts=ts, account=extra.randint(1, accounts),
                                    symbol=state.symbol, side=side,
                                    quantity=extra.randint(1, 50),
                                    price=stop if limit else 0,
                                    order_type=STOP_LIMIT if limit else STOP,
                                    tif=GTC if limit else IOC, stop_price=stop)
                out.append(stop_cmd)
                counts["stop"] += 1
                if apply(stop_cmd, state):
                    trading += 1
                seq += 1
                ts = seq * NS_PER_COMMAND
        roll = rng.random()
        account = rng.randint(1, accounts)
        cmd: Command
        if not state.live or roll < 0.09:
            side = BUY if rng.random() < 0.5 else SELL
            quantity = rng.randint(1, 100)
            if rng.random() < 0.2:
                price = crossing_price(state, side)
                if len(state.live) < resting:  # below target: nibble, don't eat makers
                    quantity = rng.randint(1, 10)
            else:
                price = passive_price(state, side)
            display = 0
            if icebergs and quantity >= 4 and extra.random() < iceberg_share:
                display = quantity // 4
                counts["iceberg"] += 1
            cmd = NewOrder(seq=seq, ts=ts, account=account, symbol=state.symbol, side=side,
                           price=price, quantity=quantity, tif=GTC, display_quantity=display)
            counts["new_gtc"] += 1
        elif roll < 0.12:
            side = BUY if rng.random() < 0.5 else SELL
            # IOC size steers the book depth: an IOC eats whole resting orders while the
            # book is above its target size and only nibbles at them while it is below.
            size = 150 if len(state.live) > resting else 10
            cmd = NewOrder(seq=seq, ts=ts, account=account, symbol=state.symbol, side=side,
                           price=crossing_price(state, side),
                           quantity=rng.randint(1, size), tif=IOC)
            counts["ioc"] += 1
        else:
            order_id = state.live[rng.randrange(len(state.live))]
            resting_order = engine.orders[order_id]
            # Cancels are 6% at the target depth; they ease off below it and pick up above
            # it, which keeps the book near ``resting`` orders over any run length.
            cancel_share = min(0.09, max(0.03, 0.05 * len(state.live) / resting))
            if roll < 0.12 + cancel_share:
                cmd = Cancel(seq=seq, ts=ts, account=resting_order.account,
                             symbol=state.symbol, order_id=order_id)
                counts["cancel"] += 1
            else:
                side = resting_order.side
                if rng.random() < 0.015:
                    price = crossing_price(state, side)
                else:
                    price = passive_price(state, side)
                if price == resting_order.price:
                    price += tick if side == SELL else -tick
                cmd = Replace(seq=seq, ts=ts, account=resting_order.account,
                              symbol=state.symbol, order_id=order_id, price=price)
                counts["move"] += 1
        out.append(cmd)
        if apply(cmd, state):
            trading += 1
        if progress is not None and i % 10_000 == 9_999:
            progress(i + 1)
    return Workload(
        instruments=instruments, prefill=prefill, commands=out, counts=counts,
        trading_commands=trading, resting_at_end=len(engine.orders),
    )
