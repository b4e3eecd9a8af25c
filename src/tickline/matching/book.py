"""The order book of one symbol: price levels of FIFO queues, and the queries on them.

Layout (chosen by profile of the exchange-core mix, where 82% of commands move an order):

* a **level** is an insertion-ordered ``dict[order_id, Order]`` plus a cached total, like
  exchange-core's ``OrdersBucketNaive``: O(1) append at the back, O(1) removal of any order
  (cancel, move), and iteration in arrival order for matching. Each order keeps its own
  place and quantity: nothing is aggregated away;
* a **side** is a ``dict[price, Level]`` plus the *key* of its best level (bids are keyed by
  price, asks by ``-price``, so bigger is better on both sides): adding or dropping a level
  is O(1), and finding the next best after the best level goes is a short tick-by-tick
  probe (see :class:`BookSide`).

The book holds data and answers queries; the matching itself (which emits events and assigns
ids) lives in :mod:`tickline.matching.engine`. Complexities are stated per method.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping

from tickline.matching.instruments import Instrument
from tickline.matching.types import BUY, SELL, STP_CANCEL_OLDEST, STP_OFF, Side

ORDER_FIELDS = ("order_id", "account", "client_order_id", "symbol", "side", "price",
                "quantity", "leaves", "filled", "tif", "expire_time", "post_only", "stp",
                "priority", "display", "hidden", "stop_price", "special")
"""The fields of :class:`Order` in constructor (and snapshot) order."""


class Order:
    """A live order as the book holds it. Mutable; owned by the engine (single writer).

    ``quantity`` is the total order quantity (replace may change it), ``leaves`` the open
    quantity *in the book*, ``hidden`` an iceberg's reserve (0 for other orders), ``filled``
    what has traded: the order's open quantity is ``leaves + hidden``, for a live order
    ``filled + leaves + hidden <= quantity``, and the difference is what was cancelled.
    ``display`` is an iceberg's display quantity (0: all visible): a resting iceberg shows
    ``leaves <= display`` and refills from ``hidden`` when that slice fills.
    ``stop_price`` is non-zero exactly while the order is an *armed* stop, held by the
    engine's stop book instead of a level (``price`` 0: a stop-market).
    ``priority`` is the sequence number at which the order took its current place in its
    level's queue (FIFO within a level is by it, and by arrival within one command).
    ``special`` is an iceberg or an armed stop (``display or stop_price``), cached in one
    field because the replace fast path checks it on every move.

    A plain class with ``__slots__`` and exact types, not a ``msgspec.Struct``: this is the
    hot path's most touched object, and a compiler (mypyc) turns a class like this into a
    native one with direct field access, while it reads and writes Struct fields more
    slowly than CPython does (issue 13). Snapshots carry orders as
    :class:`~tickline.matching.engine_types.OrderRecord` (same fields, same bytes).

    ``exposure`` is the risk state of the order's account in its symbol
    (:class:`Exposure`: position and live-order count), attached by the engine while it
    tracks those (some account has ``max_position`` or ``max_open_orders``), else ``None``.
    Not part of the order's value (equality, :data:`ORDER_FIELDS`, snapshots): a restored
    engine attaches it again.
    """

    __slots__ = ("account", "client_order_id", "display", "expire_time", "exposure",
                 "filled", "hidden", "leaves", "order_id", "post_only", "price", "priority",
                 "quantity", "side", "special", "stop_price", "stp", "symbol", "tif")

    def __init__(self, order_id: int, account: int, client_order_id: str, symbol: str,
                 side: int, price: int, quantity: int, leaves: int, filled: int, tif: int,
                 expire_time: int, post_only: bool, stp: int, priority: int,
                 display: int = 0, hidden: int = 0, stop_price: int = 0,
                 special: bool = False) -> None:
        self.order_id = order_id
        self.account = account
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.side = side
        self.price = price
        self.quantity = quantity
        self.leaves = leaves
        self.filled = filled
        self.tif = tif
        self.expire_time = expire_time
        self.post_only = post_only
        self.stp = stp
        self.priority = priority
        self.display = display
        self.hidden = hidden
        self.stop_price = stop_price
        self.special = special
        self.exposure: Exposure | None = None

    def astuple(self) -> tuple[int, int, str, str, int, int, int, int, int, int, int, bool,
                               int, int, int, int, int, bool]:
        """Every field, in :data:`ORDER_FIELDS` order."""
        return (self.order_id, self.account, self.client_order_id, self.symbol, self.side,
                self.price, self.quantity, self.leaves, self.filled, self.tif,
                self.expire_time, self.post_only, self.stp, self.priority, self.display,
                self.hidden, self.stop_price, self.special)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Order):
            return NotImplemented
        return self.astuple() == other.astuple()

    __hash__ = None  # type: ignore[assignment]  # mutable: equal by value, so unhashable

    def __repr__(self) -> str:
        return "Order(" + ", ".join(
            f"{name}={value!r}" for name, value in zip(ORDER_FIELDS, self.astuple(),
                                                        strict=True)) + ")"


class AccountRisk:
    """One account's pre-trade risk state (:mod:`tickline.matching.risk` owns it): the
    thresholds of the engine's inline fast pass, its live-order count and its
    :class:`Exposure` per symbol.

    The thresholds are the account's limits clamped to ``risk.FAST_CAP`` (quantity and
    notional ``FAST_CAP`` when unset, open orders and position 0 when unset: not checked;
    all 0 while the kill switch is on: every order is suspect); each of its exposures
    carries a copy (:meth:`set_caps`). ``open`` counts the account's live orders (resting,
    armed stops) that carry an exposure.

    A native class under mypyc with exact ``int`` fields, so the hot path reads and
    updates them without a dict lookup or a boxed int (issue 9: the dicts keyed by
    account were most of the checks' cost)."""

    __slots__ = ("account", "by_symbol", "max_notional", "max_open", "max_position",
                 "max_quantity", "open")

    def __init__(self, account: int, max_quantity: int, max_notional: int, max_open: int,
                 max_position: int) -> None:
        self.account = account
        self.max_quantity = max_quantity
        self.max_notional = max_notional
        self.max_open = max_open
        self.max_position = max_position
        self.open = 0
        self.by_symbol: dict[str, Exposure] = {}

    def set_caps(self, quantity: int, notional: int, open_orders: int, position: int) -> None:
        """New thresholds, here and on every exposure of the account."""
        self.max_quantity = quantity
        self.max_notional = notional
        self.max_open = open_orders
        self.max_position = position
        for exposure in self.by_symbol.values():
            exposure.copy_caps()


class Exposure:
    """One account's state in one symbol: ``net`` is its net filled position (buys minus
    sells, in lots), ``risk`` its :class:`AccountRisk`, whose thresholds it copies (so the
    engine's fast pass reads one object, found in one lookup: the symbol's
    :attr:`OrderBook.exposures`). Every live order of the account in the symbol points at
    it (``Order.exposure``), so a fill updates the position with native attribute
    accesses and a finished order its account's open count."""

    __slots__ = ("account", "max_notional", "max_open", "max_position", "max_quantity",
                 "net", "risk", "symbol")

    def __init__(self, risk: AccountRisk, symbol: str, net: int = 0) -> None:
        self.risk = risk
        self.account = risk.account
        self.symbol = symbol
        self.net = net
        self.max_quantity = risk.max_quantity
        self.max_notional = risk.max_notional
        self.max_open = risk.max_open
        self.max_position = risk.max_position

    def copy_caps(self) -> None:
        """Take the account's current thresholds."""
        risk = self.risk
        self.max_quantity = risk.max_quantity
        self.max_notional = risk.max_notional
        self.max_open = risk.max_open
        self.max_position = risk.max_position


class Level:
    """One price level: orders in time priority, and their total open quantity (a plain
    class for the same reason as :class:`Order`)."""

    __slots__ = ("orders", "price", "total")

    def __init__(self, price: int, orders: dict[int, Order], total: int = 0) -> None:
        self.price = price
        self.orders = orders
        self.total = total

    def __repr__(self) -> str:
        return f"Level(price={self.price!r}, orders={self.orders!r}, total={self.total!r})"


SHORT_INT_MAX = (1 << 62) - 1
"""The largest int mypyc keeps unboxed (a tagged 63-bit value): a compiled comparison or
arithmetic with a bigger one (``1 << 62``) takes the slow path of boxed ints, so hot-path
sentinels and bounds stay at or below it."""

EMPTY = -(1 << 63)
"""The ``best`` key of an empty side: below every real key and below "any price" (market)."""

SPARE_LEVELS = 64
"""How many emptied :class:`Level` objects a :class:`BookSide` keeps for reuse."""

NEXT_BEST_SCAN = 32
"""How many ticks :func:`next_best_key` steps through, looking for the next best level,
before it falls back to a C-speed ``max()`` over all levels."""


def next_best_key(levels: Mapping[int, object], key: int, sign: int, step: int) -> int:
    """The best key of a side whose best level (at ``key``) was just dropped from
    ``levels`` (prices; keys are ``price * sign``, ``sign`` 1 for bids and -1 for asks),
    or ``EMPTY`` if no level is left. Steps ``step`` (the tick size) at a time for up to
    ``max(NEXT_BEST_SCAN, L / 4)`` lookups (``L`` levels left), then scans every level
    (``max``/``min`` in C, O(L)): at most about twice the cost of the scan alone.

    Pure, on any mapping keyed by price: the engine's :class:`BookSide` and the
    market-data mirror (:mod:`tickline.stream.publisher`) both use it."""
    if not levels:
        return EMPTY
    # Probe at least NEXT_BEST_SCAN ticks, and up to a quarter as many ticks as there are
    # levels: a dict lookup costs about four times what ``max`` spends per level, so the
    # probe never costs more than the scan it replaces, and a big book (100,000 levels)
    # whose top was thinned by takers is not scanned in full on every best-level drop
    # (found by ``tickline bench matching --scale``: that scan was half the time there).
    # Stepping in price space, not key space: no ``key * sign`` per probe (compiled, mypyc
    # multiplies by a negative int on its slow path, through boxed ints).
    if sign == 1:
        price = key
        delta = -step
    else:
        price = -key
        delta = step
    for _ in range(max(NEXT_BEST_SCAN, len(levels) >> 2)):
        price += delta
        if price in levels:
            return price if sign == 1 else -price
    return max(levels) if sign == 1 else -min(levels)


class BookSide:
    """One side of a book: ``levels`` by price, and the key of the best one.

    A *key* orders prices so that bigger is better on both sides: ``price`` for bids,
    ``-price`` for asks. ``best`` is the best key (``EMPTY`` when the side is empty), so
    "does an order at limit key L cross?" is one comparison, ``best >= L``.

    Why no sorted list of prices: the exchange-core mix moves orders across ~750 levels, so
    levels are created and dropped all the time, and keeping a sorted list (``insort`` /
    ``bisect`` + ``del``) cost ~12% of the engine's time by profile. Only the *best* level is
    needed on the hot path. When it empties, the next best is almost always a few ticks away:
    :meth:`drop_level` steps tick by tick (``NEXT_BEST_SCAN`` dict lookups at most) and only
    then scans all levels (``max()`` in C, O(L)). Sorted views (depth, snapshots) sort on
    demand.

    Levels come and go with almost every move (about one level created per two commands of
    the exchange-core mix), so a side keeps up to ``SPARE_LEVELS`` emptied levels in
    ``spare`` and reuses them, with their (empty) order dicts: :meth:`new_level` instead of
    a constructor call and two allocations, :meth:`drop_level` instead of two frees. A
    dropped level is only ever read (price, total 0, no orders) by the caller that dropped
    it, before the next level is made.
    """

    __slots__ = ("best", "levels", "side", "sign", "spare", "step")

    def __init__(self, side: int, tick_size: int = 1) -> None:
        self.side = side
        self.sign = 1 if side == BUY else -1
        self.step = tick_size
        self.levels: dict[int, Level] = {}
        self.best = EMPTY
        self.spare: list[Level] = []

    def new_level(self, price: int) -> Level:
        """A new empty level at ``price``, entered in ``levels`` (the caller adds its first
        order and total, and updates ``best``). O(1); allocates nothing when a spare
        level is at hand."""
        spare = self.spare
        if spare:
            level = spare.pop()
            level.price = price
        else:
            level = Level(price, {})
        self.levels[price] = level
        return level

    def best_price(self) -> int | None:
        """Best price on this side, or ``None`` if empty. O(1)."""
        best = self.best
        return None if best == EMPTY else best * self.sign

    def add(self, order: Order) -> Level:
        """Append ``order`` at the back of its price level (creating it). O(1)."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            level = self.new_level(price)
            key = price if self.sign == 1 else -price  # (no slow ``* -1``, see next_best_key)
            if key > self.best:
                self.best = key
        level.orders[order.order_id] = order
        level.total += order.leaves
        return level

    def remove(self, order: Order) -> Level:
        """Take ``order`` out of its level (dropping the level when it empties). O(1), except
        when the best level goes (see :meth:`drop_level`)."""
        price = order.price
        level = self.levels[price]
        del level.orders[order.order_id]
        level.total -= order.leaves
        if not level.orders:
            self.drop_level(price)
        return level

    def drop_level(self, price: int) -> None:
        """Forget an empty level. O(1); when it was the best, finding the next best takes up
        to ``NEXT_BEST_SCAN`` lookups, or O(L) in C for a sparse book. The level becomes
        a spare (see the class doc)."""
        levels = self.levels
        level = levels.pop(price)
        spare = self.spare
        if len(spare) < SPARE_LEVELS:
            level.total = 0
            spare.append(level)
        sign = self.sign
        key = price if sign == 1 else -price
        if key != self.best:
            return
        self.best = next_best_key(levels, key, sign, self.step)

    def fillable(self, account: int, stp: int, need: int, limit_key: int) -> int:
        """How much an order of ``account`` with self-trade prevention mode ``stp`` would
        fill against this side down to ``limit_key``, without changing anything; stops
        counting once ``need`` is reached. An own order stops it (unless ``stp`` is off or
        cancel-oldest, which cancels own orders and goes on). An iceberg's reserve counts
        only at a level where no own order stops it: refilled slices queue behind that
        order. O(orders crossed), plus O(L log L) to sort the levels."""
        got = 0
        sign = self.sign
        levels = self.levels
        for key in reversed(self.sorted_keys()):
            if key < limit_key:
                break
            hidden = 0
            for maker in levels[key * sign].orders.values():
                if maker.account == account and stp != STP_OFF:
                    if stp == STP_CANCEL_OLDEST:
                        continue
                    return got
                got += maker.leaves
                hidden += maker.hidden
                if got >= need:
                    return got
            got += hidden
            if got >= need:
                return got
        return got

    def sorted_keys(self) -> list[int]:
        """Every level's key, ascending (best last). O(L log L)."""
        sign = self.sign
        return sorted(price * sign for price in self.levels)

    def depth(self, n: int) -> list[tuple[int, int, int]]:
        """The best ``n`` levels as ``(price, total quantity, order count)``. O(L log n)."""
        if n <= 0:
            return []
        levels = self.levels
        sign = self.sign
        keys = heapq.nlargest(n, (price * sign for price in levels))
        out = []
        for key in keys:
            level = levels[key * sign]
            out.append((level.price, level.total, len(level.orders)))
        return out

    def iter_levels_best_first(self) -> list[Level]:
        """All levels, best first. O(L log L)."""
        levels = self.levels
        sign = self.sign
        return [levels[key * sign] for key in reversed(self.sorted_keys())]


class OrderBook:
    """The book of one instrument: bids, asks and the trading status."""

    __slots__ = ("asks", "bids", "exposures", "halted", "instrument", "max_price", "min_price",
                 "move_max_price", "symbol", "tick_size")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        # The instrument's price rules, flattened for the engine's hot path.
        self.tick_size = instrument.tick_size
        self.min_price = max(instrument.min_price, 1)  # also rejects price <= 0
        self.max_price = instrument.max_price or (1 << 62)
        # the move fast path's one upper bound (replace.py): max_price, at most SHORT_INT_MAX
        # (so a compiled comparison stays on native ints) and, set by the engine's risk
        # controls, at most its move price floor (risk.py); a price above it takes the
        # general path, which checks against max_price and the limits
        self.move_max_price = min(self.max_price, SHORT_INT_MAX)
        self.bids = BookSide(BUY, instrument.tick_size)
        self.asks = BookSide(SELL, instrument.tick_size)
        self.halted = False
        # account -> its risk state in this symbol: kept by the engine's risk controls
        # (risk.py), looked up once per new order; not part of the book's digest
        self.exposures: dict[int, Exposure] = {}

    def side(self, side: int) -> BookSide:
        return self.bids if side == BUY else self.asks

    # -- queries ------------------------------------------------------------------------

    def best_bid(self) -> tuple[int, int] | None:
        """``(price, total quantity)`` of the best bid, or ``None``. O(1)."""
        price = self.bids.best_price()
        return None if price is None else (price, self.bids.levels[price].total)

    def best_ask(self) -> tuple[int, int] | None:
        """``(price, total quantity)`` of the best ask, or ``None``. O(1)."""
        price = self.asks.best_price()
        return None if price is None else (price, self.asks.levels[price].total)

    def depth(self, n: int = 10) -> dict[str, list[tuple[int, int, int]]]:
        """The best ``n`` levels per side as ``(price, quantity, order count)``. O(n)."""
        return {"bids": self.bids.depth(n), "asks": self.asks.depth(n)}

    def level_orders(self, side: int, price: int) -> list[Order]:
        """The orders resting at ``price`` on ``side``, in priority order. O(k)."""
        level = self.side(side).levels.get(price)
        return list(level.orders.values()) if level is not None else []

    def orders(self) -> list[Order]:
        """Every resting order: bids best first, then asks best first, FIFO within a level."""
        out: list[Order] = []
        for book_side in (self.bids, self.asks):
            for level in book_side.iter_levels_best_first():
                out.extend(level.orders.values())
        return out

    def digest(self) -> str:
        """A compact hash of everything that determines this book's future behaviour:
        status, and every resting order's id, owner, price, quantities and queue place."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.symbol}|{int(self.halted)}".encode())
        for order in self.orders():
            h.update(
                b"%d,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d;"
                % (order.order_id, order.account, order.client_order_id.encode(),
                   order.side, order.price, order.quantity, order.leaves, order.filled,
                   order.tif, order.expire_time, order.stp, order.priority)
            )
            if order.display:
                h.update(b"i%d,%d;" % (order.display, order.hidden))
        return h.hexdigest()

    # -- invariants ---------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`AssertionError` unless every structural invariant holds:
        each side's best key is its best level's; each level non-empty, its total equal to the sum
        of its orders' open quantity; each order on the right side and price, positive open
        quantity, ``filled + leaves + hidden <= quantity``, an iceberg's slice within its
        display quantity, a reserve only on icebergs, no armed stop; FIFO (non-decreasing
        ``priority``: several orders can take their place in one command, by cascade or
        iceberg refill) within each level; and the book not crossed."""
        for book_side in (self.bids, self.asks):
            keys = book_side.sorted_keys()
            expected_best = keys[-1] if keys else EMPTY
            assert book_side.best == expected_best, (
                f"{self.symbol}: best key {book_side.best} != {expected_best}"
            )
            for spare in book_side.spare:
                assert not spare.orders and spare.total == 0, f"{self.symbol}: spare in use"
                assert book_side.levels.get(spare.price) is not spare, "spare level in use"
            for price, level in book_side.levels.items():
                assert level.price == price
                assert level.orders, f"{self.symbol}: empty level {price} kept"
                total = 0
                last_priority = -1
                for oid, order in level.orders.items():
                    assert oid == order.order_id
                    assert order.side == book_side.side, f"order {oid} on the wrong side"
                    assert order.price == price, f"order {oid} at the wrong level"
                    assert order.leaves > 0, f"order {oid} rests with leaves {order.leaves}"
                    assert order.filled + order.leaves + order.hidden <= order.quantity, (
                        f"order {oid} overfull")
                    assert order.hidden >= 0, f"order {oid} hidden {order.hidden}"
                    if order.display:
                        assert order.leaves <= order.display, f"iceberg {oid} shows too much"
                    else:
                        assert order.hidden == 0, f"order {oid} hides without display"
                    assert order.stop_price == 0, f"armed stop {oid} in the book"
                    assert order.special == (order.display > 0), f"order {oid} special flag"
                    assert order.priority >= last_priority, f"FIFO broken at {price}: {oid}"
                    last_priority = order.priority
                    total += order.leaves
                assert total == level.total, (
                    f"{self.symbol} {Side(book_side.side).name} {price}: "
                    f"cached total {level.total} != {total}"
                )
        bid, ask = self.bids.best_price(), self.asks.best_price()
        assert bid is None or ask is None or bid < ask, f"{self.symbol} crossed: {bid} >= {ask}"
