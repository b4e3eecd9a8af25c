"""A straight Python port of the seed document's order book — the benchmark's baseline.

``../shared/seed/real-time-systems-design.md`` §2 sketches an order book in Go: float prices,
price levels as a sorted doubly linked list walked from the head on every insert, one new
level per resting order, aggregated level volume (each order's place is lost), matching under
a mutex, ``time.Now()`` on every fill, and filled orders never removed from the id map. This
module ports it line for line, keeping those defects on purpose: it exists only so that
``tickline bench matching`` can print how tickline's engine compares with it on the same
commands. The seed has no cancel or move; they are added here *in the same style* (walk the
list to find the order's level, fix the aggregated volume).

Nothing in tickline uses this for trading.
"""

from __future__ import annotations

import threading
import time

from tickline.matching import Cancel, Command, NewOrder, Replace, TimeInForce

IOC = int(TimeInForce.IOC)


class SeedOrder:
    __slots__ = ("ID", "Next", "Prev", "Price", "Side", "Status", "Symbol", "Time", "Volume")

    def __init__(self, order_id: str, symbol: str, side: str, price: float, volume: int) -> None:
        self.ID = order_id
        self.Symbol = symbol
        self.Side = side
        self.Price = price
        self.Volume = volume
        self.Time = time.time()
        self.Status = ""
        self.Next: SeedOrder | None = None
        self.Prev: SeedOrder | None = None


class SeedPriceLevel:
    __slots__ = ("next", "orders", "prev", "price", "volume")

    def __init__(self, price: float, volume: int, orders: list[SeedOrder]) -> None:
        self.price = price
        self.volume = volume
        self.orders = orders
        self.next: SeedPriceLevel | None = None
        self.prev: SeedPriceLevel | None = None


class SeedOrderBook:
    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: SeedPriceLevel | None = None
        self.asks: SeedPriceLevel | None = None
        self.orders: dict[str, SeedOrder] = {}
        self.mutex = threading.Lock()
        self.lastPrice = 0.0
        self.lastTime = 0.0


class SeedTradingEngine:
    """The seed's ``TradingEngine`` minus its worker pool (the processor benchmark measures
    that part): ``processOrder`` is what each worker ran per order."""

    def __init__(self) -> None:
        self.orderBooks: dict[str, SeedOrderBook] = {}
        self.mutex = threading.RLock()
        self.trades = 0

    def AddSymbol(self, symbol: str) -> None:  # noqa: N802 - the seed's names
        with self.mutex:
            self.orderBooks[symbol] = SeedOrderBook(symbol)

    def processOrder(self, order: SeedOrder, ioc: bool = False) -> None:  # noqa: N802
        with self.mutex:
            orderBook = self.orderBooks.get(order.Symbol)  # noqa: N806
        if orderBook is None:
            order.Status = "rejected"
            return
        self.matchOrder(orderBook, order, ioc)

    def matchOrder(self, orderBook: SeedOrderBook, order: SeedOrder, ioc: bool) -> None:  # noqa: N802,N803
        with orderBook.mutex:
            if order.Side == "buy":
                current = orderBook.asks
                while current is not None and order.Volume > 0:
                    if current.price <= order.Price:
                        self._fill(orderBook, order, current)
                    else:
                        break
                    current = current.next
            else:
                current = orderBook.bids
                while current is not None and order.Volume > 0:
                    if current.price >= order.Price:
                        self._fill(orderBook, order, current)
                    else:
                        break
                    current = current.next
            if order.Volume > 0 and not ioc:
                self.addOrderToBook(orderBook, order)
            else:
                order.Status = "filled"

    def _fill(self, orderBook: SeedOrderBook, order: SeedOrder, current: SeedPriceLevel) -> None:  # noqa: N803
        matchedVolume = min(order.Volume, current.volume)  # noqa: N806
        order.Volume -= matchedVolume
        current.volume -= matchedVolume
        self.trades += 1
        orderBook.lastPrice = current.price
        orderBook.lastTime = time.time()
        if current.volume == 0:
            self.removePriceLevel(orderBook, current)

    def addOrderToBook(self, orderBook: SeedOrderBook, order: SeedOrder) -> None:  # noqa: N802,N803
        if order.Side == "buy":
            orderBook.bids = self.addToPriceLevel(orderBook.bids, order)
        else:
            orderBook.asks = self.addToPriceLevel(orderBook.asks, order)
        orderBook.orders[order.ID] = order
        order.Status = "open"

    def addToPriceLevel(self, head: SeedPriceLevel | None, order: SeedOrder) -> SeedPriceLevel:  # noqa: N802
        current = head
        prev: SeedPriceLevel | None = None
        while current is not None:
            if (order.Side == "buy" and current.price < order.Price) or (
                order.Side == "sell" and current.price > order.Price
            ):
                break
            prev = current
            current = current.next
        newLevel = SeedPriceLevel(order.Price, order.Volume, [order])  # noqa: N806
        if prev is None:
            newLevel.next = head
            if head is not None:
                head.prev = newLevel
            return newLevel
        newLevel.next = current
        newLevel.prev = prev
        prev.next = newLevel
        if current is not None:
            current.prev = newLevel
        assert head is not None
        return head

    def removePriceLevel(self, orderBook: SeedOrderBook, level: SeedPriceLevel) -> None:  # noqa: N802,N803
        if level.prev is not None:
            level.prev.next = level.next
        elif level is orderBook.bids:
            orderBook.bids = level.next
        else:
            orderBook.asks = level.next
        if level.next is not None:
            level.next.prev = level.prev

    # -- added in the seed's style: cancel and move ----------------------------------------

    def cancelOrder(self, symbol: str, order_id: str) -> bool:  # noqa: N802
        with self.mutex:
            orderBook = self.orderBooks.get(symbol)  # noqa: N806
        if orderBook is None:
            return False
        with orderBook.mutex:
            order = orderBook.orders.get(order_id)
            if order is None or order.Status != "open":
                return False
            current = orderBook.bids if order.Side == "buy" else orderBook.asks
            while current is not None:
                if order in current.orders:
                    current.orders.remove(order)
                    current.volume -= min(order.Volume, current.volume)
                    if not current.orders or current.volume == 0:
                        self.removePriceLevel(orderBook, current)
                    break
                current = current.next
            order.Status = "cancelled"
            return True

    def moveOrder(self, symbol: str, order_id: str, price: float) -> bool:  # noqa: N802
        with self.mutex:
            orderBook = self.orderBooks.get(symbol)  # noqa: N806
        if orderBook is None:
            return False
        order = orderBook.orders.get(order_id)
        if order is None or not self.cancelOrder(symbol, order_id):
            return False
        moved = SeedOrder(order_id, symbol, order.Side, price, order.Volume)
        self.processOrder(moved)
        return True


class SeedPortRunner:
    """Feeds tickline commands to the seed port (prices to floats, ids to strings)."""

    def __init__(self, symbols: list[str], price_scale: float = 100.0) -> None:
        self.engine = SeedTradingEngine()
        for symbol in symbols:
            self.engine.AddSymbol(symbol)
        self.scale = price_scale
        self.next_id = 1
        self.missing = 0  # cancels/moves of orders the seed's book no longer has

    def apply(self, cmd: Command) -> None:
        engine = self.engine
        kind = type(cmd)
        if kind is Replace:
            assert isinstance(cmd, Replace)
            if not engine.moveOrder(cmd.symbol, f"order_{cmd.order_id}", cmd.price / self.scale):
                self.missing += 1
        elif kind is NewOrder:
            assert isinstance(cmd, NewOrder)
            order_id = self.next_id
            self.next_id += 1
            order = SeedOrder(f"order_{order_id}", cmd.symbol, "buy" if cmd.side == 1 else "sell",
                              cmd.price / self.scale, cmd.quantity)
            engine.processOrder(order, ioc=cmd.tif == IOC)
        elif kind is Cancel:
            assert isinstance(cmd, Cancel)
            if not engine.cancelOrder(cmd.symbol, f"order_{cmd.order_id}"):
                self.missing += 1
