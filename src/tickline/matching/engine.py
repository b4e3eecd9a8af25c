"""The matching engine: a deterministic state machine ``(state, command) -> (state, events)``.

One :class:`MatchingEngine` owns the books of many symbols and is their single writer. It
never reads a clock, draws a random number or touches I/O: time and sequence numbers arrive
on each command, so the same commands always give the same events, byte for byte, and the
same :meth:`MatchingEngine.digest`.

The contract (DESIGN.md "Matching semantics"):

* price-time priority; a trade executes at the resting (maker) order's price;
* limit and market orders; GTC, IOC, FOK, GTD (expiry in engine time, checked before every
  command); post-only; market orders never rest;
* stop and stop-limit orders, armed outside the book until the last trade price touches
  them, then triggered in a defined order with a bounded cascade (:mod:`.stops`); iceberg
  orders that show one display slice at a time (:mod:`.iceberg`);
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

Layout: this module holds the command dispatch, new orders, cancels, matching, resting and
expiry; replace is in :mod:`.replace`, validation in :mod:`.validation`, digest, check and
snapshots in :mod:`.state`.

The hot path is written for CPython (locals bound once, plain-int codes, type dispatch by
identity) and typed precisely so that it can later be compiled with mypyc unchanged.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from typing import Any, Final, cast

import msgspec

from tickline.matching import state
from tickline.matching.book import (
    EMPTY,
    SHORT_INT_MAX,
    BookSide,
    Exposure,
    Level,
    Order,
    OrderBook,
)
from tickline.matching.commands import (
    Cancel,
    Command,
    MassCancel,
    NewOrder,
    Replace,
    SetTradingStatus,
    TimeTick,
)
from tickline.matching.engine_types import EngineConfig, EngineSnapshot
from tickline.matching.events import (
    Accepted,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    Rejected,
    StatusChanged,
    Trade,
)
from tickline.matching.instruments import Instrument
from tickline.matching.replace import COMPILED, replace_order
from tickline.matching.risk import RiskControls
from tickline.matching.stops import (
    StopBook,
    accept_stop,
    cancel_stop,
    trigger_stops,
)
from tickline.matching.types import (
    BUY,
    FOK,
    GTC,
    GTD,
    IOC,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    STOP_LIMIT,
    STP_ACCOUNT_DEFAULT,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_OFF,
    CancelReason,
)
from tickline.matching.validation import (
    R_DUP_CLID,
    R_EXPIRE,
    R_HALTED,
    R_MARKET,
    R_POST_ONLY,
    R_SIDE,
    R_STP,
    R_TIF,
    R_TYPE,
    R_UNKNOWN_ORDER,
    R_UNKNOWN_SYMBOL,
    check_new_order_extras,
    check_price,
    check_quantity,
    price_text,
    quantity_text,
)

_NO_LIMIT: Final = -(1 << 62)  # a key below every real key: "match at any price" (market orders)
_NEVER: Final = SHORT_INT_MAX  # an engine time after every real one (unboxed when compiled)

C_USER: Final = int(CancelReason.USER)
C_IOC: Final = int(CancelReason.IOC_REMAINDER)
C_FOK: Final = int(CancelReason.FOK_UNFILLABLE)
C_STP: Final = int(CancelReason.SELF_TRADE)
C_MARKET: Final = int(CancelReason.MARKET_REMAINDER)
C_PROTECTION: Final = int(CancelReason.PRICE_PROTECTION)

# Compiled by mypyc, a module-level name is looked up in the module's dict on every use
# unless it is ``Final`` (then a C static): the classes and constants the hot paths use
# are Final (pure Python reads both kinds the same way).
_Accepted: Final = Accepted
_Rejected: Final = Rejected
_Trade: Final = Trade
_Cancelled: Final = Cancelled
_Expired: Final = Expired
_LevelChanged: Final = LevelChanged
_StatusChanged: Final = StatusChanged
_Replace: Final = Replace
_NewOrder: Final = NewOrder
_Cancel: Final = Cancel
_SetTradingStatus: Final = SetTradingStatus
_TimeTick: Final = TimeTick
_astuple: Final = msgspec.structs.astuple
_NewOrderFields = tuple[int, int, int, str, int, int, int, int, int, str, int, bool, int, int,
                        int]
"""A :class:`~tickline.matching.commands.NewOrder` as :func:`msgspec.structs.astuple` gives
it (its fields in declaration order: seq, ts, account, symbol, side, quantity, price,
order_type, tif, client_order_id, expire_time, post_only, stp, stop_price,
display_quantity)."""


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
        "_account_stp", "_default_stp", "_expiry", "_fields", "_live_client_ids", "_next_expiry",
        "_recent_client_ids", "_recent_client_order", "books", "config", "last_prices",
        "last_seq", "next_order_id", "next_trade_id", "now", "order_id_step", "orders", "stops",
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
        # order ids go next_order_id, + order_id_step, ...: 1 here; a shard of N sets N (and
        # its first id), so ids are unique across shards (tickline.shard.engine)
        self.order_id_step = 1
        self.next_trade_id = 1
        self._live_client_ids: dict[tuple[int, str], int] = {}
        self._recent_client_ids: set[tuple[int, str]] = set()
        self._recent_client_order: deque[tuple[int, str]] = deque()
        self._expiry: list[tuple[int, int]] = []  # heap of (expire_time, order_id), lazy
        self._next_expiry = _NEVER  # == self._expiry[0][0], or _NEVER when empty
        self._account_stp = self.config.account_stp
        self._default_stp = self.config.default_stp
        self.stops: dict[str, StopBook] = {}  # armed stops by symbol; only non-empty books
        self.last_prices: dict[str, int] = {}  # last trade price by symbol (0/absent: none)
        # compiled only: the command being applied, as msgspec.structs.astuple(cmd) (one C
        # call; each ``cmd.x`` is a generic attribute lookup there), for process() and the
        # move and new-order paths (replace.COMPILED); interpreted, they read attributes
        self._fields: tuple[Any, ...] = ()

    def add_instrument(self, instrument: Instrument) -> OrderBook:
        """Add a symbol (configuration, not a command). Raises ``ValueError`` if known."""
        if instrument.symbol in self.books:
            raise ValueError(f"instrument {instrument.symbol!r} is already listed")
        book = OrderBook(instrument)
        self.books[instrument.symbol] = book
        self._on_instruments(instrument.symbol)  # exposures, the move price floor (risk.py)
        return book

    # -- the one entry point --------------------------------------------------------------

    def process(self, cmd: Command) -> list[Event]:
        """Apply one command and return its events, in order.

        Time first: every GTD order whose expiry is ``<= cmd.ts`` expires before the command
        itself is applied.
        """
        out: list[Event] = []
        if COMPILED:  # every field in one C call, for the callees too (replace.COMPILED)
            fields = self._fields = _astuple(cmd)
            ts: int = fields[1]
            self.last_seq = fields[0]
        else:
            ts = cmd.ts
            self.last_seq = cmd.seq
        self.now = ts
        if ts >= self._next_expiry:
            self._expire(ts, out)
        kind = type(cmd)
        if kind is _Replace:
            replace_order(self, cmd, out)  # type: ignore[arg-type]
        elif kind is _NewOrder:
            self._new_order(cmd, out)  # type: ignore[arg-type]
            if self.stops:  # a trade, or a stop due on entry, may trigger stops
                trigger_stops(self, cmd.symbol, out)  # type: ignore[union-attr]
        elif kind is _Cancel:
            self._cancel(cmd, out)  # type: ignore[arg-type]
        elif kind is _SetTradingStatus:
            self._set_status(cmd, out)  # type: ignore[arg-type]
        elif kind is not _TimeTick:
            self._account_command(cmd, out)  # tags 30-39 (risk.py), or TypeError
        return out

    def process_many(self, commands: Iterable[Command]) -> list[list[Event]]:
        """Apply ``commands`` in order; return each one's events (one list per command,
        exactly what :meth:`process` would have returned for it, byte for byte).

        The batch entry point of the exchange loop and of replay: the dispatch of
        :meth:`process` is inlined here, so the per-call cost (a method call, binding the
        engine's attributes) is paid once per batch instead of once per command. An
        exception (an engine bug, or a non-command) propagates: the commands before it
        have been applied, and their events are lost with the batch.
        """
        results: list[list[Event]] = []
        for cmd in commands:
            out: list[Event] = []
            if COMPILED:  # every field in one C call, for the callees too (replace.COMPILED)
                fields = self._fields = _astuple(cmd)
                ts: int = fields[1]
                self.last_seq = fields[0]
            else:
                ts = cmd.ts
                self.last_seq = cmd.seq
            self.now = ts
            if ts >= self._next_expiry:
                self._expire(ts, out)
            kind = type(cmd)
            if kind is _Replace:
                replace_order(self, cmd, out)  # type: ignore[arg-type]
            elif kind is _NewOrder:
                self._new_order(cmd, out)  # type: ignore[arg-type]
                if self.stops:
                    trigger_stops(self, cmd.symbol, out)  # type: ignore[union-attr]
            elif kind is _Cancel:
                self._cancel(cmd, out)  # type: ignore[arg-type]
            elif kind is _SetTradingStatus:
                self._set_status(cmd, out)  # type: ignore[arg-type]
            elif kind is not _TimeTick:
                self._account_command(cmd, out)
            results.append(out)  # (compiled: the list primitive, not a bound-method call)
        return results

    # -- new orders ---------------------------------------------------------------------

    def _new_order(self, cmd: NewOrder, out: list[Event]) -> None:
        if COMPILED:  # ``cmd``'s fields, read by process(); unboxed once, a native tuple
            f = cast(_NewOrderFields, self._fields)
            account = f[2]
            symbol = f[3]
            side = f[4]
            quantity = f[5]
            price = f[6]
            order_type = f[7]
            tif = f[8]
            clid = f[9]
            post_only = f[11]
            stp = f[12]
            stop_price = f[13]
            display = f[14]
        else:
            account = cmd.account
            symbol = cmd.symbol
            side = cmd.side
            quantity = cmd.quantity
            price = cmd.price
            order_type = cmd.order_type
            tif = cmd.tif
            clid = cmd.client_order_id
            post_only = cmd.post_only
            stp = cmd.stp
            stop_price = cmd.stop_price
            display = cmd.display_quantity
        book = self.books.get(symbol)
        if book is None:
            return self._reject(out, cmd, 0, R_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        if book.halted:
            return self._reject(out, cmd, 0, R_HALTED, f"{symbol} is halted")
        if side != BUY and side != SELL:
            return self._reject(out, cmd, 0, R_SIDE,
                                f"side must be 1 (buy) or 2 (sell), got {side}")
        if tif < GTC or tif > GTD:
            return self._reject(out, cmd, 0, R_TIF, f"time in force must be 1..4, got {tif}")
        instrument = book.instrument
        reason = check_quantity(instrument, quantity)
        if reason:
            return self._reject(out, cmd, 0, reason, quantity_text(instrument, quantity))
        if order_type == LIMIT or order_type == STOP_LIMIT:
            reason = check_price(instrument, price)
            if reason:
                return self._reject(out, cmd, 0, reason, price_text(instrument, price))
        elif order_type == MARKET:
            if post_only:
                return self._reject(out, cmd, 0, R_MARKET, "a market order cannot be post-only")
            price = 0
            if tif != FOK:
                tif = IOC  # market orders never rest
        elif order_type == STOP:
            price = 0
        else:
            return self._reject(
                out, cmd, 0, R_TYPE, f"order type must be 1 (limit), 2 (market), 3 (stop) or "
                f"4 (stop-limit), got {order_type}"
            )
        if stop_price or display or order_type > MARKET:
            reason, text = check_new_order_extras(
                instrument, order_type, tif, stop_price, display, quantity, post_only)
            if reason:
                return self._reject(out, cmd, 0, reason, text)
        if tif == GTD and cmd.expire_time <= cmd.ts:
            return self._reject(
                out, cmd, 0, R_EXPIRE,
                f"expire_time {cmd.expire_time} is not after engine time {cmd.ts}",
            )
        if stp == STP_ACCOUNT_DEFAULT:
            stp = self._account_stp.get(account, self._default_stp)
        elif stp < STP_CANCEL_NEWEST or stp > STP_OFF:
            return self._reject(out, cmd, 0, R_STP, f"stp mode must be 0..4, got {stp}")
        if clid and self._client_id_taken(account, clid):
            return self._reject(out, cmd, 0, R_DUP_CLID,
                                f"client order id {clid!r} already used by account {account}")
        if order_type > MARKET:  # an armed stop: outside the book until triggered
            if self._gated and book.exposures.get(account) is not None:
                # kill switch and limits, at its limit price (stop-limit) or stop price
                at = price or stop_price
                if self._pretrade_new(cmd, book, book.asks if side == BUY else book.bids, at,
                                      tif, -at if side == BUY else at, out):
                    return None
            return accept_stop(self, cmd, order_type, price, stp, out)
        if side == BUY:
            opposite = book.asks
            limit_key = -price if order_type == LIMIT else _NO_LIMIT
        else:
            opposite = book.bids
            limit_key = price if order_type == LIMIT else _NO_LIMIT
        crosses = opposite.best >= limit_key
        if post_only and crosses:
            return self._reject(
                out, cmd, 0, R_POST_ONLY,
                f"post-only {'buy' if side == BUY else 'sell'} at {price} would take liquidity",
            )
        exposure: Exposure | None = None  # the account's risk state in this symbol
        if self._gated:  # the kill switch and risk limits (risk.py): a fast pass inline (it
            # runs for every order), the exact check and its typed reject only when needed
            exposure = book.exposures.get(account)  # clamped thresholds; all 0: disabled
            if exposure is None and self._tracking:  # an account without limits: tracked
                exposure = self._exposure(account, symbol)
            if exposure is not None:
                # Every comparison sits in an ``if`` (CPython 3.11 specializes an int
                # comparison only when a jump uses it, not when it makes a value).
                suspect = True
                if (quantity <= exposure.max_quantity
                        and price * quantity <= exposure.max_notional
                        and order_type != MARKET):  # (a market order's notional: exact)
                    suspect = False
                    max_open = exposure.max_open
                    if max_open and (tif == GTC or tif == GTD) and (
                            exposure.risk.open >= max_open):
                        suspect = True
                    max_position = exposure.max_position
                    if max_position:
                        after = exposure.net
                        if side == BUY:
                            after += quantity
                        else:
                            after -= quantity
                        if after > max_position or -after > max_position:
                            suspect = True
                if suspect and self._pretrade_new(cmd, book, opposite, price, tif, limit_key,
                                                  out):
                    return None

        order_id = self.next_order_id
        self.next_order_id = order_id + self.order_id_step
        order = Order(
            order_id, account, clid, symbol, side, price, quantity, quantity, 0,
            tif, cmd.expire_time if tif == GTD else 0, post_only, stp, self.last_seq, display,
        )
        if exposure is not None:
            order.exposure = exposure
        out.append(_Accepted(order_id, account, clid, symbol, side, order_type, tif, price,
                             quantity, 0, display))
        if clid:
            self._live_client_ids[(account, clid)] = order_id

        if crosses:
            match_key = self._protect(book, opposite, limit_key)
            if tif == FOK and self._fillable(opposite, order, match_key) < quantity:
                self._finish(order)
                out.append(_Cancelled(order_id, account, symbol, side, price, quantity, C_FOK))
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
        if exposure is not None:  # a new live order (a triggered stop or a replaced
            exposure.risk.open += 1  # iceberg that rests was counted already)
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
        if order.stop_price:
            return cancel_stop(self, order, out)
        own_side = self.books[order.symbol].side(order.side)
        level = own_side.remove(order)
        self._cancel_rest(order, out, C_USER)
        out.append(_LevelChanged(order.symbol, order.side, level.price, level.total,
                                 len(level.orders)))

    # -- matching -------------------------------------------------------------------------

    def _match(self, opposite: BookSide, taker: Order, limit_key: int, out: list[Event]) -> None:
        """Trade ``taker`` against ``opposite`` while it crosses ``limit_key``.

        Emits trades, cancels from self-trade prevention, and one ``LevelChanged`` per maker
        level touched. On return the taker's ``leaves`` is what is left; if STP cancelled the
        taker, its leaves is 0 and it is already finished. An iceberg maker whose slice fills
        refills from its reserve at the back of its level (after this pass over the level);
        the symbol's last trade price is updated.
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
        taker_buys = taker_side == BUY  # (no ``sign * qty``: mypyc multiplies a negative
        # int on its slow, boxing path)
        filled_before = taker.filled
        traded_at = 0
        stop = False  # self-trade prevention cancelled the taker
        while opposite.best >= limit_key:
            price = opposite.best if sign == 1 else -opposite.best
            level = levels[price]
            level_orders = level.orders
            total_before = level.total
            done: list[int] = []
            refill: list[Order] | None = None
            stop = False
            for maker in level_orders.values():
                if maker.account == taker_account and stp != STP_OFF:
                    if stp == STP_CANCEL_OLDEST or stp == STP_CANCEL_BOTH:
                        done.append(maker.order_id)
                        level.total -= maker.leaves
                        self._finish(maker)
                        out.append(_Cancelled(maker.order_id, maker.account, symbol, opp_side,
                                              price, maker.leaves + maker.hidden, C_STP))
                        maker.leaves = 0
                        maker.hidden = 0
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
                exposure = maker.exposure  # positions, while tracked: the maker's now,
                if exposure is not None:  # the taker's once at the end
                    if taker_buys:
                        exposure.net -= qty
                    else:
                        exposure.net += qty
                hidden = maker.hidden
                out.append(_Trade(trade_id, symbol, price, qty, taker_side, maker.order_id,
                                  maker.account, maker_leaves + hidden, taker_id, taker_account,
                                  leaves))
                trade_id += 1
                traded_at = price
                if maker_leaves == 0:
                    done.append(maker.order_id)
                    if hidden:
                        if refill is None:
                            refill = []
                        refill.append(maker)
                    else:
                        self._finish(maker)
                if leaves == 0:
                    break
            for order_id in done:
                del level_orders[order_id]
            if refill is not None:  # the next slices, at the back of the level
                seq = self.last_seq
                for maker in refill:
                    hidden = maker.hidden
                    qty = maker.display if maker.display < hidden else hidden
                    maker.hidden = hidden - qty
                    maker.leaves = qty
                    maker.priority = seq
                    level_orders[maker.order_id] = maker
                    level.total += qty
            if level_orders:
                if done or level.total != total_before:
                    out.append(_LevelChanged(symbol, opp_side, price, level.total,
                                             len(level_orders)))
            else:
                opposite.drop_level(price)
                out.append(_LevelChanged(symbol, opp_side, price, 0, 0))
            if stop or taker.leaves == 0:
                break
        self.next_trade_id = trade_id
        if traded_at:
            self.last_prices[symbol] = traded_at
            exposure = taker.exposure
            if exposure is not None:
                if taker_buys:
                    exposure.net += taker.filled - filled_before
                else:
                    exposure.net -= taker.filled - filled_before
        if stop:
            self._cancel_rest(taker, out, C_STP)

    def _fillable(self, opposite: BookSide, taker: Order, limit_key: int) -> int:
        """How much of ``taker`` would fill now (see :meth:`BookSide.fillable`)."""
        return opposite.fillable(taker.account, taker.stp, taker.leaves, limit_key)

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
        """Put an order that is done taking into its level; an iceberg shows one slice."""
        display = order.display
        if display:
            order.special = True
            if order.leaves > display:
                order.hidden = order.leaves - display
                order.leaves = display
        own_side = book.bids if order.side == BUY else book.asks
        level = own_side.add(order)
        self.orders[order.order_id] = order  # (open counts: the caller's, see _new_order)
        if order.tif == GTD:
            self._schedule_expiry(order)
        out.append(_LevelChanged(order.symbol, order.side, order.price, level.total,
                                 len(level.orders)))

    def _cancel_rest(self, order: Order, out: list[Event], reason: int) -> None:
        """Cancel the open quantity of an order that is no longer in a level."""
        out.append(_Cancelled(order.order_id, order.account, order.symbol, order.side,
                              order.price, order.leaves + order.hidden, reason))
        order.leaves = 0
        order.hidden = 0
        self._finish(order)

    def _finish(self, order: Order) -> None:
        """Forget a finished order: out of the live index and the live client ids."""
        if self.orders.pop(order.order_id, None) is not None:
            exposure = order.exposure  # (None unless open counts are tracked)
            if exposure is not None:
                exposure.risk.open -= 1
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
            if order.stop_price:  # an armed stop: not in a level
                self.stops[order.symbol].remove(order)
                if not self.stops[order.symbol]:
                    del self.stops[order.symbol]
                out.append(_Expired(order.order_id, order.account, order.symbol, order.side,
                                    order.price, order.leaves))
                order.leaves = 0
                self._finish(order)
                continue
            level = self.books[order.symbol].side(order.side).remove(order)
            out.append(_Expired(order.order_id, order.account, order.symbol, order.side,
                                order.price, order.leaves + order.hidden))
            order.leaves = 0
            order.hidden = 0
            self._finish(order)
            out.append(_LevelChanged(order.symbol, order.side, level.price, level.total,
                                     len(level.orders)))

    # -- status ---------------------------------------------------------------------------

    def _set_status(self, cmd: SetTradingStatus, out: list[Event]) -> None:
        book = self.books.get(cmd.symbol)
        if book is None:
            self._reject(out, cmd, 0, R_UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}")
            return
        book.halted = cmd.halted
        self._set_move_bound(book)
        out.append(_StatusChanged(cmd.symbol, cmd.halted))

    # -- validation helpers ---------------------------------------------------------------

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
        out.append(_Rejected(account, clid, cmd.symbol, order_id, reason, text))

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
        return self._next_expiry if self._expiry else None

    def order(self, order_id: int) -> Order | None:
        """The live order with this id, or ``None`` if it is unknown or finished."""
        return self.orders.get(order_id)

    def digest(self) -> str:
        """A hex digest of the whole engine state: every book, the armed stops, the last
        trade prices, the id counters, engine time, the last sequence number and the
        remembered client order ids. Equal digests mean engines that will behave identically
        from here on."""
        return state.digest(self)

    def check(self) -> None:
        """Assert every invariant of every book, stop book and of the live-order index."""
        state.check(self)

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        """A self-contained copy of the state, for the journal's snapshots."""
        return state.snapshot(self, EngineSnapshot)

    def restore(self, snap: EngineSnapshot) -> None:
        """Replace this engine's state with ``snap`` (books must be empty and configured
        with the same instruments)."""
        state.restore(self, snap)


__all__ = ["EngineConfig", "EngineSnapshot", "Level", "MatchingEngine", "Order", "OrderBook"]
