"""The matching engine: a deterministic state machine ``(state, command) -> (state, events)``.

One :class:`MatchingEngine` owns the books of many symbols and is their single writer. It
never reads a clock, draws a random number or touches I/O: time and sequence numbers arrive
on each command, so the same commands always give the same events, byte for byte, and the
same :meth:`MatchingEngine.digest`.

The contract (DESIGN.md "Matching semantics"):

* price-time priority; a trade executes at the resting (maker) order's price;
* limit and market orders; GTC, IOC, FOK, GTD (expiry in engine time, checked before every
  command); post-only; market orders never rest;
* cancel and replace by the owning account only (another account's order is answered as an
  unknown one); a same-price quantity decrease keeps time priority, anything else goes to
  the back of the (new) level and may trade;
* self-trade prevention per account (or per order): cancel newest, oldest, both, or off;
* validation before anything changes, each failure a :class:`~tickline.matching.events.Rejected`
  with a stable :class:`~tickline.matching.types.RejectReason`;
* for every order ``filled + open + cancelled == quantity``; the book is never crossed after a
  command completes;
* account controls (:mod:`tickline.matching.risk`): mass cancel, cancel a list of orders,
  a per-account kill switch, and pre-trade risk limits per account.

The hot path is written for CPython (locals bound once, plain-int codes, type dispatch by
identity) and typed precisely so that it can later be compiled with mypyc unchanged.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterable

import msgspec

from tickline.matching.book import EMPTY, BookSide, Level, Order, OrderBook
from tickline.matching.commands import (
    Cancel,
    Command,
    MassCancel,
    NewOrder,
    Replace,
    SetTradingStatus,
    TimeTick,
)
from tickline.matching.events import (
    Accepted,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    Rejected,
    Replaced,
    StatusChanged,
    Trade,
)
from tickline.matching.instruments import Instrument
from tickline.matching.risk import NO_CAP, RiskControls, RiskLimits
from tickline.matching.types import (
    BUY,
    FOK,
    GTC,
    GTD,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STP_ACCOUNT_DEFAULT,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_OFF,
    CancelReason,
    RejectReason,
)

_NO_LIMIT = -(1 << 62)  # a key below every real key: "match at any price" (market orders)
_NEVER = 1 << 62  # an engine time after every real one

R_UNKNOWN_SYMBOL = int(RejectReason.UNKNOWN_SYMBOL)
R_HALTED = int(RejectReason.INSTRUMENT_HALTED)
R_SIDE = int(RejectReason.INVALID_SIDE)
R_TYPE = int(RejectReason.INVALID_ORDER_TYPE)
R_STP = int(RejectReason.INVALID_STP_MODE)
R_TIF = int(RejectReason.INVALID_TIME_IN_FORCE)
R_QTY = int(RejectReason.NON_POSITIVE_QUANTITY)
R_LOT = int(RejectReason.OFF_LOT_QUANTITY)
R_QTY_MAX = int(RejectReason.QUANTITY_TOO_LARGE)
R_PRICE = int(RejectReason.NON_POSITIVE_PRICE)
R_TICK = int(RejectReason.OFF_TICK_PRICE)
R_BAND = int(RejectReason.PRICE_OUT_OF_BAND)
R_EXPIRE = int(RejectReason.EXPIRE_TIME_IN_PAST)
R_POST_ONLY = int(RejectReason.POST_ONLY_WOULD_TAKE)
R_MARKET = int(RejectReason.MARKET_ORDER_NOT_ALLOWED)
R_REPLACE_QTY = int(RejectReason.REPLACE_QUANTITY_TOO_LOW)
R_UNKNOWN_ORDER = int(RejectReason.UNKNOWN_ORDER)
R_DUP_CLID = int(RejectReason.DUPLICATE_CLIENT_ORDER_ID)

C_USER = int(CancelReason.USER)
C_IOC = int(CancelReason.IOC_REMAINDER)
C_FOK = int(CancelReason.FOK_UNFILLABLE)
C_STP = int(CancelReason.SELF_TRADE)
C_MARKET = int(CancelReason.MARKET_REMAINDER)
C_PROTECTION = int(CancelReason.PRICE_PROTECTION)


class EngineConfig(msgspec.Struct, kw_only=True):
    """Engine-wide settings. Part of the engine's identity: two engines replay identically
    only with the same config.

    ``account_stp`` maps an account to its self-trade prevention mode (default
    ``default_stp``). ``client_id_memory`` bounds how many *finished* orders' client order
    ids are remembered for duplicate detection (live orders' ids are always remembered).
    ``account_limits`` maps an account to its pre-trade :class:`RiskLimits` (none: no limit).
    """

    default_stp: int = STP_CANCEL_NEWEST
    account_stp: dict[int, int] = msgspec.field(default_factory=dict)
    client_id_memory: int = 100_000
    account_limits: dict[int, RiskLimits] = msgspec.field(default_factory=dict)


class EngineSnapshot(msgspec.Struct, kw_only=True):
    """Everything needed to rebuild an engine exactly (see :meth:`MatchingEngine.snapshot`)."""

    last_seq: int
    now: int
    next_order_id: int
    next_trade_id: int
    halted: list[str]
    orders: list[Order]
    recent_client_ids: list[tuple[int, str]]
    attachments: dict[str, bytes] = msgspec.field(default_factory=dict)
    """State of components downstream of the engine that derive from its events (e.g. the
    exchange's report numbering), saved with the engine so a snapshot restores them at the
    same sequence number. Opaque to the engine."""
    positions: list[tuple[int, str, int]] = msgspec.field(default_factory=list)
    """``(account, symbol, net filled quantity)``, sorted (only when positions are tracked:
    some account has ``max_position``)."""
    disabled_accounts: list[int] = msgspec.field(default_factory=list)
    """Accounts whose kill switch is on, sorted."""


class MatchingEngine(RiskControls):
    """Multi-symbol, single-writer, deterministic matching engine.

    >>> from tickline.matching import *
    >>> eng = MatchingEngine([Instrument(symbol="ABC")])
    >>> _ = eng.process(NewOrder(seq=1, ts=1, account=1, symbol="ABC", side=SELL,
    ...                          price=100, quantity=5))
    >>> [type(e).__name__ for e in eng.process(
    ...     NewOrder(seq=2, ts=2, account=2, symbol="ABC", side=BUY, price=101, quantity=3))]
    ['Accepted', 'Trade', 'LevelChanged']
    """

    __slots__ = (
        "_account_stp", "_default_stp", "_expiry", "_live_client_ids", "_next_expiry",
        "_recent_client_ids", "_recent_client_order", "books", "config", "last_seq",
        "next_order_id", "next_trade_id", "now", "orders",
    )  # and RiskControls' own

    def __init__(
        self, instruments: Iterable[Instrument], config: EngineConfig | None = None
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        self.books: dict[str, OrderBook] = {}
        self._init_risk(self.config.account_limits)
        for instrument in instruments:
            self.add_instrument(instrument)
        self.orders: dict[int, Order] = {}  # live orders only: finished ones are dropped
        self.last_seq = 0
        self.now = 0
        self.next_order_id = 1
        self.next_trade_id = 1
        self._live_client_ids: dict[tuple[int, str], int] = {}
        self._recent_client_ids: set[tuple[int, str]] = set()
        self._recent_client_order: deque[tuple[int, str]] = deque()
        self._expiry: list[tuple[int, int]] = []  # heap of (expire_time, order_id), lazy
        self._next_expiry = _NEVER  # == self._expiry[0][0], or _NEVER when empty
        self._account_stp = self.config.account_stp
        self._default_stp = self.config.default_stp

    def add_instrument(self, instrument: Instrument) -> OrderBook:
        """Add a symbol (configuration, not a command). Raises ``ValueError`` if known."""
        if instrument.symbol in self.books:
            raise ValueError(f"instrument {instrument.symbol!r} is already listed")
        book = OrderBook(instrument)
        self.books[instrument.symbol] = book
        self._on_instruments()  # position tables, the move price floor (risk.py)
        return book

    # -- the one entry point --------------------------------------------------------------

    def process(self, cmd: Command) -> list[Event]:
        """Apply one command and return its events, in order.

        Time first: every GTD order whose expiry is ``<= cmd.ts`` expires before the command
        itself is applied.
        """
        out: list[Event] = []
        ts = cmd.ts
        self.now = ts
        self.last_seq = cmd.seq
        if ts >= self._next_expiry:
            self._expire(ts, out)
        kind = type(cmd)
        if kind is Replace:
            self._replace(cmd, out)  # type: ignore[arg-type]
        elif kind is NewOrder:
            self._new_order(cmd, out)  # type: ignore[arg-type]
        elif kind is Cancel:
            self._cancel(cmd, out)  # type: ignore[arg-type]
        elif kind is SetTradingStatus:
            self._set_status(cmd, out)  # type: ignore[arg-type]
        elif kind is not TimeTick:
            self._account_command(cmd, out)  # tags 30-39 (risk.py), or TypeError
        return out

    # -- new orders ---------------------------------------------------------------------

    def _new_order(self, cmd: NewOrder, out: list[Event]) -> None:
        account = cmd.account
        clid = cmd.client_order_id
        symbol = cmd.symbol
        book = self.books.get(symbol)
        if book is None:
            return self._reject(out, cmd, 0, R_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        if book.halted:
            return self._reject(out, cmd, 0, R_HALTED, f"{symbol} is halted")
        side = cmd.side
        if side != BUY and side != SELL:
            return self._reject(out, cmd, 0, R_SIDE,
                                f"side must be 1 (buy) or 2 (sell), got {side}")
        order_type = cmd.order_type
        tif = cmd.tif
        if tif < GTC or tif > GTD:
            return self._reject(out, cmd, 0, R_TIF, f"time in force must be 1..4, got {tif}")
        instrument = book.instrument
        quantity = cmd.quantity
        reason = self._check_quantity(instrument, quantity)
        if reason:
            return self._reject(out, cmd, 0, reason, self._quantity_text(instrument, quantity))
        price = cmd.price
        if order_type == LIMIT:
            reason = self._check_price(instrument, price)
            if reason:
                return self._reject(out, cmd, 0, reason, self._price_text(instrument, price))
        elif order_type == MARKET:
            if cmd.post_only:
                return self._reject(out, cmd, 0, R_MARKET, "a market order cannot be post-only")
            price = 0
            if tif != FOK:
                tif = IOC  # market orders never rest
        else:
            return self._reject(
                out, cmd, 0, R_TYPE, f"order type must be 1 (limit) or 2 (market), got {order_type}"
            )
        if tif == GTD and cmd.expire_time <= cmd.ts:
            return self._reject(
                out, cmd, 0, R_EXPIRE,
                f"expire_time {cmd.expire_time} is not after engine time {cmd.ts}",
            )
        stp = cmd.stp
        if stp == STP_ACCOUNT_DEFAULT:
            stp = self._account_stp.get(account, self._default_stp)
        elif stp < STP_CANCEL_NEWEST or stp > STP_OFF:
            return self._reject(out, cmd, 0, R_STP, f"stp mode must be 0..4, got {stp}")
        if clid and self._client_id_taken(account, clid):
            return self._reject(out, cmd, 0, R_DUP_CLID,
                                f"client order id {clid!r} already used by account {account}")
        if side == BUY:
            opposite = book.asks
            limit_key = -price if order_type == LIMIT else _NO_LIMIT
        else:
            opposite = book.bids
            limit_key = price if order_type == LIMIT else _NO_LIMIT
        crosses = opposite.best >= limit_key
        if cmd.post_only and crosses:
            return self._reject(
                out, cmd, 0, R_POST_ONLY,
                f"post-only {'buy' if side == BUY else 'sell'} at {price} would take liquidity",
            )
        if self._gated:  # the kill switch and risk limits (risk.py): a fast pass inline (it
            # runs for every order), the exact check and its typed reject only when needed
            caps = self._caps.get(account)  # maxima, NO_CAP where unset; all 0: disabled
            if caps is not None:
                max_quantity, max_notional, max_open, max_position = caps
                suspect = (quantity > max_quantity or price * quantity > max_notional
                           or (order_type == MARKET and max_notional != NO_CAP))
                if not suspect and max_open != NO_CAP and tif != IOC and tif != FOK:
                    counts = self._open_counts
                    suspect = counts is not None and counts.get(account, 0) >= max_open
                if not suspect and max_position != NO_CAP:
                    positions = self._positions
                    position = positions[symbol].get(account, 0) if positions is not None else 0
                    after = position + quantity if side == BUY else position - quantity
                    suspect = after > max_position or -after > max_position
                if suspect and self._pretrade_new(cmd, book, opposite, price, tif, limit_key,
                                                  out):
                    return None

        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        order = Order(
            order_id, account, clid, symbol, side, price, quantity, quantity, 0,
            tif, cmd.expire_time if tif == GTD else 0, cmd.post_only, stp, cmd.seq,
        )
        out.append(
            Accepted(order_id, account, clid, symbol, side, order_type, tif, price, quantity)
        )
        if clid:
            self._live_client_ids[(account, clid)] = order_id

        if crosses:
            match_key = self._protect(book, opposite, limit_key)
            if tif == FOK and self._fillable(opposite, order, match_key) < quantity:
                self._finish(order)
                out.append(Cancelled(order_id, account, symbol, side, price, quantity, C_FOK))
                return None
            self._match(opposite, order, match_key, out)
            if order.leaves == 0:  # filled, or cancelled by self-trade prevention
                self._finish(order)
                return None
            if match_key != limit_key and opposite.best >= limit_key:
                self._cancel_rest(order, out, C_PROTECTION)
                return None
        if tif == IOC or tif == FOK:  # a FOK gets here only when nothing crossed at all
            self._cancel_rest(order, out, C_FOK if tif == FOK else
                              C_MARKET if order_type == MARKET else C_IOC)
            return None
        self._rest(book, order, out)
        return None

    # -- cancel and replace ---------------------------------------------------------------

    def _find_owned(self, cmd: Cancel | Replace, out: list[Event]) -> Order | None:
        """The live order a cancel/replace targets, or ``None`` after emitting the reject."""
        order_id = cmd.order_id
        if order_id == 0 and cmd.orig_client_order_id:
            order_id = self._live_client_ids.get((cmd.account, cmd.orig_client_order_id), 0)
        order = self.orders.get(order_id)
        if order is None or order.symbol != cmd.symbol or order.account != cmd.account:
            # Another account's order gets exactly the answer a missing one gets (code, order
            # id and text), so a cancel or replace cannot probe which order ids are live.
            ref = cmd.order_id or repr(cmd.orig_client_order_id)
            self._reject(out, cmd, cmd.order_id, R_UNKNOWN_ORDER,
                         f"order {ref} is not a live order of {cmd.symbol!r}")
            return None
        return order

    def _cancel(self, cmd: Cancel, out: list[Event]) -> None:
        order = self._find_owned(cmd, out)
        if order is None:
            return
        own_side = self.books[order.symbol].side(order.side)
        level = own_side.remove(order)
        self._cancel_rest(order, out, C_USER)
        out.append(LevelChanged(order.symbol, order.side, level.price, level.total,
                                len(level.orders)))

    def _replace(self, cmd: Replace, out: list[Event]) -> None:
        """Fast path for the commonest command of all (82% of the exchange-core mix): a
        price-only move of a plain order to a valid new price that does not cross.
        Everything else — crossing moves, quantity or client-id changes, post-only orders,
        every reject — takes :meth:`_replace_general`. Inlined by profile (each Python call
        and each line costs here); the contract is the same."""
        order = self.orders.get(cmd.order_id)
        if (order is None or cmd.quantity or cmd.client_order_id or order.post_only
                or order.account != cmd.account or order.symbol != cmd.symbol):
            return self._replace_general(cmd, out)
        symbol = order.symbol
        book = self.books[symbol]
        price = cmd.price
        old_price = order.price
        side = order.side
        if side == BUY:
            own_side = book.bids
            crosses = book.asks.best >= -price
        else:
            own_side = book.asks
            crosses = book.bids.best >= price
        if (crosses or price == old_price or book.halted or price < book.min_price
                or price > book.max_price or price % book.tick_size):
            return self._replace_general(cmd, out)
        if price > self._move_price_floor:  # the move may breach a notional limit (risk.py)
            return self._replace_general(cmd, out)
        order_id = order.order_id
        leaves = order.leaves
        levels = own_side.levels
        level = levels[old_price]
        level_orders = level.orders
        del level_orders[order_id]
        if level_orders:
            total = level.total - leaves
            level.total = total
            out.append(LevelChanged(symbol, side, old_price, total, len(level_orders)))
        else:
            own_side.drop_level(old_price)
            out.append(LevelChanged(symbol, side, old_price, 0, 0))
        order.price = price
        order.priority = cmd.seq
        out.append(Replaced(order_id, order.account, order.client_order_id, symbol, side,
                            price, order.quantity, leaves, False))
        level = levels.get(price)  # type: ignore[assignment]
        if level is None:
            levels[price] = Level(price, {order_id: order}, leaves)
            key = price * own_side.sign
            if key > own_side.best:
                own_side.best = key
            out.append(LevelChanged(symbol, side, price, leaves, 1))
        else:
            level_orders = level.orders
            level_orders[order_id] = order
            total = level.total + leaves
            level.total = total
            out.append(LevelChanged(symbol, side, price, total, len(level_orders)))
        return None

    def _replace_general(self, cmd: Replace, out: list[Event]) -> None:
        """Every replace: lookup by client order id, quantity changes, new client ids,
        post-only orders, same-price changes, and all the rejects."""
        order = self.orders.get(cmd.order_id)
        if order is None or order.account != cmd.account or order.symbol != cmd.symbol:
            order = self._find_owned(cmd, out)  # by client order id, or the reject
            if order is None:
                return None
        order_id = order.order_id
        symbol = order.symbol
        book = self.books[symbol]
        if book.halted:
            return self._reject(out, cmd, order_id, R_HALTED, f"{symbol} is halted")
        old_price = order.price
        price = cmd.price or old_price
        quantity = cmd.quantity or order.quantity
        if price != old_price and (
            price <= 0 or price % book.tick_size or price < book.min_price
            or price > book.max_price
        ):
            instrument = book.instrument
            return self._reject(out, cmd, order_id, self._check_price(instrument, price),
                                self._price_text(instrument, price))
        if quantity != order.quantity:
            reason = self._check_quantity(book.instrument, quantity)
            if reason:
                return self._reject(out, cmd, order_id, reason,
                                    self._quantity_text(book.instrument, quantity))
        filled = order.filled
        if quantity <= filled:
            return self._reject(
                out, cmd, order_id, R_REPLACE_QTY,
                f"new quantity {quantity} is not above the filled quantity {filled}",
            )
        clid = cmd.client_order_id
        account = order.account
        if clid and clid != order.client_order_id and self._client_id_taken(account, clid):
            return self._reject(out, cmd, order_id, R_DUP_CLID,
                                f"client order id {clid!r} already used by account {account}")
        side = order.side
        if side == BUY:
            own_side = book.bids
            opposite = book.asks
            limit_key = -price
        else:
            own_side = book.asks
            opposite = book.bids
            limit_key = price
        crosses = opposite.best >= limit_key
        if crosses and order.post_only:
            return self._reject(out, cmd, order_id, R_POST_ONLY,
                                f"post-only order {order_id} at {price} would take liquidity")
        if self._gated and self._pretrade_replace(cmd, order, price, quantity, out):
            return None  # kill switch or a risk limit (risk.py)

        # Validated: from here on the replace happens.
        if clid and clid != order.client_order_id:
            live = self._live_client_ids
            if order.client_order_id:
                old_key = (account, order.client_order_id)
                del live[old_key]
                self._remember_client_id(old_key)
            live[(account, clid)] = order_id
            order.client_order_id = clid
        leaves = quantity - filled
        old_leaves = order.leaves
        levels = own_side.levels
        level = levels[old_price]
        if price == old_price and leaves <= old_leaves:  # keeps its place in the queue
            level.total -= old_leaves - leaves
            order.leaves = leaves
            order.quantity = quantity
            out.append(Replaced(order_id, account, order.client_order_id, symbol,
                                side, price, quantity, leaves, True))
            if leaves != old_leaves:
                out.append(LevelChanged(symbol, side, price, level.total, len(level.orders)))
            return None
        # Out of its old level (inlined BookSide.remove) ...
        level_orders = level.orders
        del level_orders[order_id]
        total = level.total - old_leaves
        level.total = total
        if level_orders:
            out.append(LevelChanged(symbol, side, old_price, total, len(level_orders)))
        else:
            own_side.drop_level(old_price)
            out.append(LevelChanged(symbol, side, old_price, 0, 0))
        order.price = price
        order.quantity = quantity
        order.leaves = leaves
        order.priority = cmd.seq
        out.append(Replaced(order_id, account, order.client_order_id, symbol,
                            side, price, quantity, leaves, False))
        if crosses:
            self._match(opposite, order, self._protect(book, opposite, limit_key), out)
            if order.leaves == 0:  # filled, or cancelled by self-trade prevention
                self._finish(order)
                return None
            if opposite.best >= limit_key:  # stopped by price protection
                self._cancel_rest(order, out, C_PROTECTION)
                return None
        # ... and onto the back of its new one.
        level = own_side.add(order)
        out.append(LevelChanged(symbol, side, price, level.total, len(level.orders)))
        return None

    # -- matching -------------------------------------------------------------------------

    def _match(self, opposite: BookSide, taker: Order, limit_key: int, out: list[Event]) -> None:
        """Trade ``taker`` against ``opposite`` while it crosses ``limit_key``.

        Emits trades, cancels from self-trade prevention, and one ``LevelChanged`` per maker
        level touched. On return the taker's ``leaves`` is what is left; if STP cancelled the
        taker, its leaves is 0 and it is already finished.
        """
        levels = opposite.levels
        sign = opposite.sign
        opp_side = opposite.side
        symbol = taker.symbol
        taker_side = taker.side
        taker_id = taker.order_id
        taker_account = taker.account
        stp = taker.stp
        trade_id = self.next_trade_id
        # this symbol's positions (account -> net lots); None unless some account has
        # max_position
        positions = self._positions[symbol] if self._positions is not None else None
        signed = 1 if taker_side == BUY else -1  # the taker's position change per lot
        while opposite.best >= limit_key:
            price = opposite.best * sign
            level = levels[price]
            level_orders = level.orders
            total_before = level.total
            done: list[int] = []
            stop = False
            for maker in level_orders.values():
                if maker.account == taker_account and stp != STP_OFF:
                    if stp == STP_CANCEL_OLDEST or stp == STP_CANCEL_BOTH:
                        done.append(maker.order_id)
                        level.total -= maker.leaves
                        self._finish(maker)
                        out.append(Cancelled(maker.order_id, maker.account, symbol, opp_side,
                                             price, maker.leaves, C_STP))
                        maker.leaves = 0
                    if stp != STP_CANCEL_OLDEST:
                        stop = True
                        break
                    continue
                leaves = taker.leaves
                maker_leaves = maker.leaves
                qty = leaves if leaves < maker_leaves else maker_leaves
                maker_leaves -= qty
                leaves -= qty
                maker.leaves = maker_leaves
                maker.filled += qty
                taker.leaves = leaves
                taker.filled += qty
                level.total -= qty
                if positions is not None:
                    maker_account = maker.account
                    positions[maker_account] = positions.get(maker_account, 0) - signed * qty
                    positions[taker_account] = positions.get(taker_account, 0) + signed * qty
                out.append(Trade(trade_id, symbol, price, qty, taker_side, maker.order_id,
                                 maker.account, maker_leaves, taker_id, taker_account, leaves))
                trade_id += 1
                if maker_leaves == 0:
                    done.append(maker.order_id)
                    self._finish(maker)
                if leaves == 0:
                    break
            for order_id in done:
                del level_orders[order_id]
            if level_orders:
                if done or level.total != total_before:
                    out.append(LevelChanged(symbol, opp_side, price, level.total,
                                            len(level_orders)))
            else:
                opposite.drop_level(price)
                out.append(LevelChanged(symbol, opp_side, price, 0, 0))
            if stop:
                self.next_trade_id = trade_id
                self._cancel_rest(taker, out, C_STP)
                return
            if taker.leaves == 0:
                break
        self.next_trade_id = trade_id

    def _fillable(self, opposite: BookSide, taker: Order, limit_key: int) -> int:
        """How much of ``taker`` would fill now (respecting self-trade prevention), without
        changing anything; stops counting once the taker's quantity is reached."""
        need = taker.leaves
        got = 0
        stp = taker.stp
        account = taker.account
        sign = opposite.sign
        levels = opposite.levels
        for key in reversed(opposite.sorted_keys()):
            if key < limit_key:
                break
            for maker in levels[key * sign].orders.values():
                if maker.account == account and stp != STP_OFF:
                    if stp == STP_CANCEL_OLDEST:
                        continue
                    return got
                got += maker.leaves
                if got >= need:
                    return got
        return got

    def _protect(self, book: OrderBook, opposite: BookSide, limit_key: int) -> int:
        """Tighten ``limit_key`` to the instrument's protection band around the best opposite
        price found on arrival (no-op when the band is off)."""
        ticks = book.instrument.protection_ticks
        if ticks == 0 or opposite.best == EMPTY:
            return limit_key
        band = opposite.best - ticks * book.instrument.tick_size
        return band if band > limit_key else limit_key

    # -- resting, finishing ----------------------------------------------------------------

    def _rest(self, book: OrderBook, order: Order, out: list[Event]) -> None:
        own_side = book.bids if order.side == BUY else book.asks
        level = own_side.add(order)
        self.orders[order.order_id] = order
        counts = self._open_counts
        if counts is not None:
            counts[order.account] = counts.get(order.account, 0) + 1
        if order.tif == GTD:
            self._schedule_expiry(order)
        out.append(LevelChanged(order.symbol, order.side, order.price, level.total,
                                len(level.orders)))

    def _cancel_rest(self, order: Order, out: list[Event], reason: int) -> None:
        """Cancel the open quantity of an order that is no longer in a level."""
        out.append(Cancelled(order.order_id, order.account, order.symbol, order.side,
                             order.price, order.leaves, reason))
        order.leaves = 0
        self._finish(order)

    def _finish(self, order: Order) -> None:
        """Forget a finished order: out of the live index and the live client ids."""
        if self.orders.pop(order.order_id, None) is not None and self._open_counts is not None:
            self._open_counts[order.account] -= 1
        clid = order.client_order_id
        if clid:
            key = (order.account, clid)
            if self._live_client_ids.get(key) == order.order_id:
                del self._live_client_ids[key]
                self._remember_client_id(key)

    def _schedule_expiry(self, order: Order) -> None:
        heapq.heappush(self._expiry, (order.expire_time, order.order_id))
        self._next_expiry = self._expiry[0][0]

    def _expire(self, now: int, out: list[Event]) -> None:
        expiry = self._expiry
        orders = self.orders
        while expiry and expiry[0][0] <= now:
            expire_time, order_id = heapq.heappop(expiry)
            self._next_expiry = expiry[0][0] if expiry else _NEVER
            order = orders.get(order_id)
            if order is None or order.expire_time != expire_time:
                continue  # finished since: a stale heap entry
            level = self.books[order.symbol].side(order.side).remove(order)
            out.append(Expired(order.order_id, order.account, order.symbol, order.side,
                               order.price, order.leaves))
            order.leaves = 0
            self._finish(order)
            out.append(LevelChanged(order.symbol, order.side, level.price, level.total,
                                    len(level.orders)))

    # -- status ---------------------------------------------------------------------------

    def _set_status(self, cmd: SetTradingStatus, out: list[Event]) -> None:
        book = self.books.get(cmd.symbol)
        if book is None:
            self._reject(out, cmd, 0, R_UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
            return
        book.halted = cmd.halted
        out.append(StatusChanged(cmd.symbol, cmd.halted))

    # -- validation helpers ---------------------------------------------------------------

    @staticmethod
    def _check_quantity(instrument: Instrument, quantity: int) -> int:
        if quantity <= 0:
            return R_QTY
        if quantity % instrument.lot_size:
            return R_LOT
        if instrument.max_quantity and quantity > instrument.max_quantity:
            return R_QTY_MAX
        return 0

    @staticmethod
    def _quantity_text(instrument: Instrument, quantity: int) -> str:
        if quantity <= 0:
            return f"quantity must be positive, got {quantity}"
        if quantity % instrument.lot_size:
            return f"quantity {quantity} is not a multiple of the lot size {instrument.lot_size}"
        return f"quantity {quantity} exceeds the maximum {instrument.max_quantity}"

    @staticmethod
    def _check_price(instrument: Instrument, price: int) -> int:
        if price <= 0:
            return R_PRICE
        if price % instrument.tick_size:
            return R_TICK
        if price < instrument.min_price or (instrument.max_price and price > instrument.max_price):
            return R_BAND
        return 0

    @staticmethod
    def _price_text(instrument: Instrument, price: int) -> str:
        if price <= 0:
            return f"limit price must be positive, got {price}"
        if price % instrument.tick_size:
            return f"price {price} is not a multiple of the tick size {instrument.tick_size}"
        return (f"price {price} is outside the band "
                f"[{instrument.min_price}, {instrument.max_price or 'inf'}]")

    def _client_id_taken(self, account: int, clid: str) -> bool:
        key = (account, clid)
        return key in self._live_client_ids or key in self._recent_client_ids

    def _remember_client_id(self, key: tuple[int, str]) -> None:
        """Keep a finished order's client id for duplicate detection, within a bound."""
        limit = self.config.client_id_memory
        if limit <= 0:
            return
        self._recent_client_ids.add(key)
        self._recent_client_order.append(key)
        if len(self._recent_client_order) > limit:
            self._recent_client_ids.discard(self._recent_client_order.popleft())

    @staticmethod
    def _reject(
        out: list[Event], cmd: NewOrder | Cancel | Replace | SetTradingStatus | MassCancel,
        order_id: int, reason: int, text: str,
    ) -> None:
        account = getattr(cmd, "account", 0)
        clid = getattr(cmd, "client_order_id", "")
        out.append(Rejected(account, clid, cmd.symbol, order_id, reason, text))

    # -- queries ------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook:
        """The book of ``symbol``; ``KeyError`` naming it if unknown."""
        try:
            return self.books[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    @property
    def next_expiry(self) -> int | None:
        """The engine time at which the next GTD order expires, or ``None``: the sequencer
        sends a :class:`~tickline.matching.commands.TimeTick` then, if nothing else arrives."""
        return None if self._next_expiry == _NEVER else self._next_expiry

    def order(self, order_id: int) -> Order | None:
        """The live order with this id, or ``None`` if it is unknown or finished."""
        return self.orders.get(order_id)

    def digest(self) -> str:
        """A hex digest of the whole engine state: every book, the id counters, engine time,
        the last sequence number and the remembered client order ids. Equal digests mean
        engines that will behave identically from here on."""
        h = hashlib.blake2b(digest_size=16)
        h.update(b"%d|%d|%d|%d|" % (self.last_seq, self.now, self.next_order_id,
                                    self.next_trade_id))
        for symbol in sorted(self.books):
            h.update(self.books[symbol].digest().encode())
        for account, clid in self._recent_client_order:
            h.update(b"%d:%s;" % (account, clid.encode()))
        h.update(self._risk_digest())
        return h.hexdigest()

    def check(self) -> None:
        """Assert every invariant of every book and of the live-order index."""
        seen: set[int] = set()
        for symbol, book in self.books.items():
            book.check()
            for order in book.orders():
                assert order.symbol == symbol
                assert self.orders.get(order.order_id) is order, (
                    f"order {order.order_id} rests but is not indexed"
                )
                seen.add(order.order_id)
        assert seen == set(self.orders), "index holds orders that do not rest"
        for (account, _clid), order_id in self._live_client_ids.items():
            assert self.orders[order_id].account == account
        self._check_risk()

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        """A self-contained copy of the state, for the journal's snapshots."""
        orders = [msgspec.structs.replace(o) for book in self.books.values()
                  for o in book.orders()]
        return EngineSnapshot(
            last_seq=self.last_seq, now=self.now, next_order_id=self.next_order_id,
            next_trade_id=self.next_trade_id,
            halted=[s for s, b in self.books.items() if b.halted],
            orders=orders, recent_client_ids=list(self._recent_client_order),
            positions=sorted((a, s, q) for (a, s), q in self.positions().items()),
            disabled_accounts=sorted(self._disabled),
        )

    def restore(self, snap: EngineSnapshot) -> None:
        """Replace this engine's state with ``snap`` (books must be empty and configured
        with the same instruments)."""
        if self.orders or self.last_seq:
            raise RuntimeError("restore needs a fresh engine")
        self.last_seq = snap.last_seq
        self.now = snap.now
        self.next_order_id = snap.next_order_id
        self.next_trade_id = snap.next_trade_id
        for symbol in snap.halted:
            self.book(symbol).halted = True
        for order in snap.orders:
            book = self.book(order.symbol)
            (book.bids if order.side == BUY else book.asks).add(order)
            self.orders[order.order_id] = order
            if order.client_order_id:
                self._live_client_ids[(order.account, order.client_order_id)] = order.order_id
            if order.tif == GTD:
                self._schedule_expiry(order)
        for account, clid in snap.recent_client_ids:
            self._remember_client_id((account, clid))
        if self._positions is not None:
            for account, symbol, quantity in snap.positions:
                self._symbol_positions(symbol)[account] = quantity
        self._disabled = set(snap.disabled_accounts)
        self._update_gate()
        self._recount_open()


__all__ = ["EngineConfig", "EngineSnapshot", "Level", "MatchingEngine", "Order", "OrderBook"]
