"""A deliberately simple reference matcher for differential testing.

It implements the same contract as :class:`tickline.matching.MatchingEngine` (DESIGN.md
"Matching semantics") with no cleverness at all: every resting order of every symbol lives in
one flat list; the opposite side is filtered and *sorted* (price, then arrival) each time it
is needed; fill-or-kill is decided by running the order on a deep copy of the whole state and
looking at the result; client-id memory is a plain list whose last ``client_id_memory`` entries
count. It emits every event the engine emits except ``LevelChanged`` (the differential test
checks depth separately, by replaying the engine's level changes against this book).

Where the contract leaves a choice open, the choices below are the engine's, written down:

* reject precedence for a new order: symbol, halted, side, time in force, quantity, order
  type and price, GTD expiry, STP mode, duplicate client id, post-only;
  for cancel/replace: lookup (unknown, then owner), halted (replace only), price, quantity,
  quantity vs filled, duplicate client id, post-only;
* the *incoming* order's STP mode decides; STP is checked maker by maker in priority order;
* a FOK that cannot fill completely (counting what STP would let it reach) is cancelled whole
  and touches nothing, not even own orders that STP would have cancelled;
* price protection: the band is ``protection_ticks * tick_size`` beyond the best opposite
  price on arrival; if the band (not the order's own limit) stopped it, the remainder is
  cancelled with ``PRICE_PROTECTION`` whatever the time in force;
* market orders are reported as IOC (or FOK), with price 0;
* account commands: a mass cancel / cancel list / kill switch cancels the account's resting
  orders and armed stops sorted by symbol then order id, then one summary event; a disabled
  account's new order is rejected after every other check (risk limits are not modelled
  here).
* stops (``STOP``/``STOP_LIMIT``) wait in a flat list of their own; after every new order and
  replace, while one of the command's symbol is due at the last trade price (none before the
  first trade), the one with the largest overshoot (then arrival, then id) triggers and is
  run as a market or limit order; beyond ``max_stop_triggers`` per command, due stops are
  cancelled ``STOP_TRIGGER_LIMIT``; a stop due on entry triggers at once;
* an iceberg keeps ``visible`` beside its total ``leaves``; a maker is matched for its
  visible part; when that is gone and something is left, the next slice gets a new arrival
  (the back of its level). A FOK's trial run on a deep copy handles the reserve for free.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tickline.matching import (
    BUY,
    Accepted,
    AccountStatusChanged,
    Cancel,
    Cancelled,
    CancelOrders,
    CancelReason,
    EngineConfig,
    Event,
    Expired,
    Instrument,
    MassCancel,
    MassCancelled,
    NewOrder,
    Rejected,
    RejectReason,
    Replace,
    Replaced,
    SetAccountStatus,
    SetTradingStatus,
    StatusChanged,
    STPMode,
    TimeTick,
    Trade,
    Triggered,
)

LIMIT, MARKET, STOP, STOP_LIMIT = 1, 2, 3, 4
GTC, IOC, FOK, GTD = 1, 2, 3, 4
R = RejectReason
C = CancelReason


@dataclass
class RefOrder:
    order_id: int
    account: int
    clid: str
    symbol: str
    side: int
    price: int  # 0 for market
    quantity: int
    leaves: int
    filled: int
    tif: int
    expire_time: int
    post_only: bool
    stp: int
    arrival: int
    is_market: bool = False
    display: int = 0
    visible: int = 0  # icebergs only: the displayed slice (others show all their leaves)
    stop_price: int = 0  # while armed


class ReferenceMatcher:
    def __init__(self, instruments: list[Instrument], config: EngineConfig) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.config = config
        self.halted: set[str] = set()
        self.disabled: set[int] = set()
        self.resting: list[RefOrder] = []
        self.stops: list[RefOrder] = []
        self.last: dict[str, int] = {}
        self.finished_clids: list[tuple[int, str]] = []
        self.next_order_id = 1
        self.next_trade_id = 1
        self.arrivals = 0

    # -- helpers --------------------------------------------------------------------------

    def _arrival(self) -> int:
        self.arrivals += 1
        return self.arrivals

    @staticmethod
    def _visible(o: RefOrder) -> int:
        return o.visible if o.display else o.leaves

    def _clid_taken(self, account: int, clid: str) -> bool:
        if any(o.account == account and o.clid == clid for o in self.resting + self.stops):
            return True
        memory = self.config.client_id_memory
        return memory > 0 and (account, clid) in self.finished_clids[-memory:]

    def _finished(self, order: RefOrder) -> None:
        if order in self.resting:
            self.resting.remove(order)
        if order in self.stops:
            self.stops.remove(order)
        if order.clid:
            self.finished_clids.append((order.account, order.clid))

    def _opposite(self, order: RefOrder) -> list[RefOrder]:
        makers = [o for o in self.resting if o.symbol == order.symbol and o.side != order.side]
        if order.side == BUY:  # asks: lowest price first
            return sorted(makers, key=lambda o: (o.price, o.arrival))
        return sorted(makers, key=lambda o: (-o.price, o.arrival))

    @staticmethod
    def _within(order: RefOrder, limit: int | None, price: int) -> bool:
        if limit is None:
            return True
        return price <= limit if order.side == BUY else price >= limit

    def _crosses(self, order: RefOrder, limit: int | None) -> bool:
        return any(self._within(order, limit, m.price) for m in self._opposite(order))

    def _band_limit(self, order: RefOrder, limit: int | None) -> int | None:
        inst = self.instruments[order.symbol]
        opposite = self._opposite(order)
        if not inst.protection_ticks or not opposite:
            return limit
        width = inst.protection_ticks * inst.tick_size
        if order.side == BUY:
            band = opposite[0].price + width
            return band if limit is None or band < limit else limit
        band = opposite[0].price - width
        return band if limit is None or band > limit else limit

    def _cancel(self, order: RefOrder, reason: C, out: list[Event]) -> None:
        out.append(Cancelled(order.order_id, order.account, order.symbol, order.side,
                             order.price, order.leaves, int(reason)))
        order.leaves = 0
        self._finished(order)

    def _match(self, taker: RefOrder, limit: int | None, out: list[Event]) -> None:
        """Trade ``taker`` against the opposite side down to ``limit`` (None: any price),
        one maker at a time, re-sorting the opposite side before each."""
        while True:
            opposite = self._opposite(taker)
            if not opposite or not self._within(taker, limit, opposite[0].price):
                return
            maker = opposite[0]
            if maker.account == taker.account and taker.stp != STPMode.OFF:
                if taker.stp in (STPMode.CANCEL_OLDEST, STPMode.CANCEL_BOTH):
                    self._cancel(maker, C.SELF_TRADE, out)
                if taker.stp != STPMode.CANCEL_OLDEST:
                    self._cancel(taker, C.SELF_TRADE, out)
                    return
                continue
            qty = min(taker.leaves, self._visible(maker))
            maker.leaves -= qty
            maker.visible -= qty if maker.display else 0
            maker.filled += qty
            taker.leaves -= qty
            taker.filled += qty
            out.append(Trade(self.next_trade_id, taker.symbol, maker.price, qty, taker.side,
                             maker.order_id, maker.account, maker.leaves, taker.order_id,
                             taker.account, taker.leaves))
            self.next_trade_id += 1
            self.last[taker.symbol] = maker.price
            if maker.leaves == 0:
                self._finished(maker)
            elif maker.display and maker.visible == 0:  # next slice, at the back
                maker.visible = min(maker.display, maker.leaves)
                maker.arrival = self._arrival()
            if taker.leaves == 0:
                self._finished(taker)
                return

    def _take(self, order: RefOrder, limit: int | None, out: list[Event]) -> bool:
        """Match an incoming (or re-priced) order; True if something of it is left that was
        not stopped by the protection band."""
        band_limit = self._band_limit(order, limit)
        self._match(order, band_limit, out)
        if order.leaves == 0:
            return False
        if band_limit != limit and self._crosses(order, limit):
            self._cancel(order, C.PRICE_PROTECTION, out)
            return False
        return True

    @staticmethod
    def _reject(cmd: Any, order_id: int, reason: R, out: list[Event]) -> None:
        out.append(Rejected(getattr(cmd, "account", 0), getattr(cmd, "client_order_id", ""),
                            cmd.symbol, order_id, int(reason), ""))

    @staticmethod
    def _quantity_reason(inst: Instrument, quantity: int) -> R | None:
        if quantity <= 0:
            return R.NON_POSITIVE_QUANTITY
        if quantity % inst.lot_size:
            return R.OFF_LOT_QUANTITY
        if inst.max_quantity and quantity > inst.max_quantity:
            return R.QUANTITY_TOO_LARGE
        return None

    @staticmethod
    def _display_reason(inst: Instrument, display: int, quantity: int) -> R | None:
        if display < 0:
            return R.NEGATIVE_DISPLAY_QUANTITY
        if display % inst.lot_size:
            return R.OFF_LOT_DISPLAY_QUANTITY
        if display > quantity:
            return R.DISPLAY_QUANTITY_TOO_LARGE
        return None

    @classmethod
    def _stop_reason(cls, inst: Instrument, stop_price: int) -> R | None:
        reason = cls._price_reason(inst, stop_price)
        return {None: None, R.NON_POSITIVE_PRICE: R.NON_POSITIVE_STOP_PRICE,
                R.OFF_TICK_PRICE: R.OFF_TICK_STOP_PRICE,
                R.PRICE_OUT_OF_BAND: R.STOP_PRICE_OUT_OF_BAND}[reason]

    @staticmethod
    def _price_reason(inst: Instrument, price: int) -> R | None:
        if price <= 0:
            return R.NON_POSITIVE_PRICE
        if price % inst.tick_size:
            return R.OFF_TICK_PRICE
        if price < inst.min_price or (inst.max_price and price > inst.max_price):
            return R.PRICE_OUT_OF_BAND
        return None

    # -- commands -------------------------------------------------------------------------

    def process(self, cmd: Any) -> list[Event]:
        out: list[Event] = []
        due = sorted((o for o in self.resting + self.stops
                      if o.tif == GTD and o.expire_time <= cmd.ts),
                     key=lambda o: (o.expire_time, o.order_id))
        for o in due:
            out.append(Expired(o.order_id, o.account, o.symbol, o.side, o.price, o.leaves))
            o.leaves = 0
            self._finished(o)
        if isinstance(cmd, NewOrder):
            self._new(cmd, out)
            self._trigger(cmd.symbol, out)
        elif isinstance(cmd, Cancel):
            order = self._find(cmd, out)
            if order is not None:
                self._cancel(order, C.USER, out)
        elif isinstance(cmd, Replace):
            self._replace(cmd, out)
            self._trigger(cmd.symbol, out)
        elif isinstance(cmd, SetTradingStatus):
            if cmd.symbol not in self.instruments:
                self._reject(cmd, 0, R.UNKNOWN_SYMBOL, out)
            else:
                (self.halted.add if cmd.halted else self.halted.discard)(cmd.symbol)
                out.append(StatusChanged(cmd.symbol, cmd.halted))
        elif isinstance(cmd, MassCancel):
            if cmd.symbol and cmd.symbol not in self.instruments:
                self._reject(cmd, 0, R.UNKNOWN_SYMBOL, out)
            elif cmd.side not in (0, 1, 2):
                self._reject(cmd, 0, R.INVALID_SIDE, out)
            else:
                mine = [o for o in self.resting + self.stops if o.account == cmd.account
                        and cmd.symbol in ("", o.symbol) and cmd.side in (0, o.side)]
                self._cancel_all(mine, C.MASS_CANCEL, out)
                out.append(MassCancelled(cmd.account, cmd.symbol, cmd.side,
                                         int(C.MASS_CANCEL), len(mine)))
        elif isinstance(cmd, CancelOrders):
            if cmd.reason not in (C.USER, C.MASS_CANCEL, C.CANCEL_ON_DISCONNECT, C.KILL_SWITCH):
                out.append(Rejected(cmd.account, "", "", 0, int(R.INVALID_CANCEL_REASON), ""))
            else:
                mine = [o for o in self.resting + self.stops if o.account == cmd.account
                        and o.order_id in cmd.order_ids]
                self._cancel_all(mine, C(cmd.reason), out)
                out.append(MassCancelled(cmd.account, "", 0, cmd.reason, len(mine)))
        elif isinstance(cmd, SetAccountStatus):
            mine = []
            if cmd.enabled:
                self.disabled.discard(cmd.account)
            else:
                self.disabled.add(cmd.account)
                mine = [o for o in self.resting + self.stops if o.account == cmd.account]
                self._cancel_all(mine, C.KILL_SWITCH, out)
            out.append(AccountStatusChanged(cmd.account, cmd.enabled, len(mine)))
        else:
            assert isinstance(cmd, TimeTick)
        return out

    def _cancel_all(self, orders: list[RefOrder], reason: C, out: list[Event]) -> None:
        for o in sorted(orders, key=lambda o: (o.symbol, o.order_id)):
            self._cancel(o, reason, out)  # (out of the resting list too)

    def _new(self, cmd: NewOrder, out: list[Event]) -> None:
        inst = self.instruments.get(cmd.symbol)
        if inst is None:
            return self._reject(cmd, 0, R.UNKNOWN_SYMBOL, out)
        if cmd.symbol in self.halted:
            return self._reject(cmd, 0, R.INSTRUMENT_HALTED, out)
        if cmd.side not in (1, 2):
            return self._reject(cmd, 0, R.INVALID_SIDE, out)
        if cmd.tif not in (GTC, IOC, FOK, GTD):
            return self._reject(cmd, 0, R.INVALID_TIME_IN_FORCE, out)
        reason = self._quantity_reason(inst, cmd.quantity)
        if reason:
            return self._reject(cmd, 0, reason, out)
        tif, price = cmd.tif, cmd.price
        if cmd.order_type in (LIMIT, STOP_LIMIT):
            reason = self._price_reason(inst, price)
            if reason:
                return self._reject(cmd, 0, reason, out)
        elif cmd.order_type == MARKET:
            if cmd.post_only:
                return self._reject(cmd, 0, R.MARKET_ORDER_NOT_ALLOWED, out)
            price = 0
            tif = FOK if tif == FOK else IOC
        elif cmd.order_type == STOP:
            price = 0
        else:
            return self._reject(cmd, 0, R.INVALID_ORDER_TYPE, out)
        is_stop = cmd.order_type in (STOP, STOP_LIMIT)
        if is_stop:
            reason = self._stop_reason(inst, cmd.stop_price)
            if reason:
                return self._reject(cmd, 0, reason, out)
            if cmd.post_only:
                return self._reject(cmd, 0, R.INVALID_STOP_ORDER, out)
        elif cmd.stop_price:
            return self._reject(cmd, 0, R.STOP_PRICE_NOT_ALLOWED, out)
        display = cmd.display_quantity
        if display < 0:
            return self._reject(cmd, 0, R.NEGATIVE_DISPLAY_QUANTITY, out)
        if display and (cmd.order_type == MARKET or is_stop or tif in (IOC, FOK)):
            return self._reject(cmd, 0, R.DISPLAY_QUANTITY_NOT_ALLOWED, out)
        reason = self._display_reason(inst, display, cmd.quantity)
        if reason:
            return self._reject(cmd, 0, reason, out)
        if tif == GTD and cmd.expire_time <= cmd.ts:
            return self._reject(cmd, 0, R.EXPIRE_TIME_IN_PAST, out)
        stp = cmd.stp
        if stp == STPMode.ACCOUNT_DEFAULT:
            stp = self.config.account_stp.get(cmd.account, self.config.default_stp)
        elif stp not in (1, 2, 3, 4):
            return self._reject(cmd, 0, R.INVALID_STP_MODE, out)
        if cmd.client_order_id and self._clid_taken(cmd.account, cmd.client_order_id):
            return self._reject(cmd, 0, R.DUPLICATE_CLIENT_ORDER_ID, out)
        order = RefOrder(self.next_order_id, cmd.account, cmd.client_order_id, cmd.symbol,
                         cmd.side, price, cmd.quantity, cmd.quantity, 0, tif,
                         cmd.expire_time if tif == GTD else 0, cmd.post_only, stp,
                         self._arrival(), cmd.order_type == MARKET, display)
        if is_stop:
            if cmd.account in self.disabled:
                return self._reject(cmd, 0, R.ACCOUNT_DISABLED, out)
            self.next_order_id += 1
            order.stop_price = cmd.stop_price
            out.append(Accepted(order.order_id, order.account, order.clid, order.symbol,
                                order.side, cmd.order_type, tif, price, order.quantity,
                                cmd.stop_price, 0))
            self.stops.append(order)
            return None
        limit = None if order.is_market else price
        if cmd.post_only and self._crosses(order, limit):
            return self._reject(cmd, 0, R.POST_ONLY_WOULD_TAKE, out)
        if cmd.account in self.disabled:
            return self._reject(cmd, 0, R.ACCOUNT_DISABLED, out)
        self.next_order_id += 1
        out.append(Accepted(order.order_id, order.account, order.clid, order.symbol,
                            order.side, cmd.order_type, tif, price, order.quantity, 0, display))
        self._enter(order, limit, out)
        return None

    def _enter(self, order: RefOrder, limit: int | None, out: list[Event]) -> None:
        """Run an accepted (or triggered) order: FOK trial, take, cancel or rest."""
        tif = order.tif
        if tif == FOK:
            trial = copy.deepcopy(self)
            trial_order = copy.deepcopy(order)
            trial._take(trial_order, limit, [])
            if trial_order.filled < order.quantity:
                self._cancel(order, C.FOK_UNFILLABLE, out)
                return None
        if not self._take(order, limit, out):
            return None
        if tif in (IOC, FOK):
            self._cancel(order, C.MARKET_REMAINDER if order.is_market else C.IOC_REMAINDER, out)
            return None
        self._rest(order)
        return None

    def _rest(self, order: RefOrder) -> None:
        order.visible = min(order.display, order.leaves) if order.display else 0
        self.resting.append(order)

    # -- stops ----------------------------------------------------------------------------

    def _trigger(self, symbol: str, out: list[Event]) -> None:
        triggered = 0
        while True:
            last = self.last.get(symbol, 0)
            due = [s for s in self.stops if s.symbol == symbol and last > 0 and (
                last >= s.stop_price if s.side == BUY else last <= s.stop_price)]
            if not due:
                return
            stop = min(due, key=lambda s: (-abs(last - s.stop_price), s.arrival, s.order_id))
            self.stops.remove(stop)
            if triggered >= self.config.max_stop_triggers:
                self._cancel(stop, C.STOP_TRIGGER_LIMIT, out)
                continue
            triggered += 1
            stop_price, stop.stop_price = stop.stop_price, 0
            stop.is_market = stop.price == 0
            if stop.is_market:
                stop.tif = FOK if stop.tif == FOK else IOC
            stop.arrival = self._arrival()
            out.append(Triggered(stop.order_id, stop.account, stop.clid, symbol, stop.side,
                                 MARKET if stop.is_market else LIMIT, stop.price, stop_price,
                                 stop.leaves))
            self._enter(stop, None if stop.is_market else stop.price, out)

    def _find(self, cmd: Cancel | Replace, out: list[Event]) -> RefOrder | None:
        if cmd.order_id == 0 and cmd.orig_client_order_id:
            found = [o for o in self.resting + self.stops if o.account == cmd.account
                     and o.clid == cmd.orig_client_order_id]
        else:
            found = [o for o in self.resting + self.stops if o.order_id == cmd.order_id]
        if not found or found[0].symbol != cmd.symbol or found[0].account != cmd.account:
            # another account's order is answered exactly as a missing one
            self._reject(cmd, cmd.order_id, R.UNKNOWN_ORDER, out)
            return None
        return found[0]

    def _replace(self, cmd: Replace, out: list[Event]) -> None:
        order = self._find(cmd, out)
        if order is None:
            return None
        inst = self.instruments[order.symbol]
        if order.symbol in self.halted:
            return self._reject(cmd, order.order_id, R.INSTRUMENT_HALTED, out)
        if order.stop_price:
            return self._replace_stop(cmd, order, out)
        if cmd.stop_price:
            return self._reject(cmd, order.order_id, R.STOP_PRICE_NOT_ALLOWED, out)
        price = cmd.price or order.price
        quantity = cmd.quantity or order.quantity
        if price != order.price:
            reason = self._price_reason(inst, price)
            if reason:
                return self._reject(cmd, order.order_id, reason, out)
        if quantity != order.quantity:
            reason = self._quantity_reason(inst, quantity)
            if reason:
                return self._reject(cmd, order.order_id, reason, out)
        if quantity <= order.filled:
            return self._reject(cmd, order.order_id, R.REPLACE_QUANTITY_TOO_LOW, out)
        display = cmd.display_quantity or order.display
        if cmd.display_quantity:
            reason = self._display_reason(inst, display, quantity)
            if reason:
                return self._reject(cmd, order.order_id, reason, out)
        clid = cmd.client_order_id
        if clid and clid != order.clid and self._clid_taken(order.account, clid):
            return self._reject(cmd, order.order_id, R.DUPLICATE_CLIENT_ORDER_ID, out)
        moved = copy.copy(order)
        moved.price = price
        if order.post_only and self._crosses(moved, price):
            return self._reject(cmd, order.order_id, R.POST_ONLY_WOULD_TAKE, out)
        if clid and clid != order.clid:
            if order.clid:
                self.finished_clids.append((order.account, order.clid))
            order.clid = clid
        new_open = quantity - order.filled
        everything = 1 << 62
        keeps_priority = (price == order.price and new_open <= order.leaves
                          and (display or everything) <= (order.display or everything))
        if keeps_priority and display:
            shown = self._visible(order)
            order.visible = min(shown, display, new_open)
        order.price = price
        order.quantity = quantity
        order.leaves = new_open
        order.display = display
        out.append(Replaced(order.order_id, order.account, order.clid, order.symbol,
                            order.side, price, quantity, order.leaves, keeps_priority, 0,
                            display))
        if keeps_priority:
            return None
        order.arrival = self._arrival()
        self.resting.remove(order)  # while it takes, it is not in the book
        if self._take(order, price, out):
            self._rest(order)
        return None

    def _replace_stop(self, cmd: Replace, order: RefOrder, out: list[Event]) -> None:
        inst = self.instruments[order.symbol]
        oid = order.order_id
        price = cmd.price or order.price
        if cmd.price and cmd.price != order.price:
            if order.price == 0:
                return self._reject(cmd, oid, R.INVALID_STOP_ORDER, out)
            reason = self._price_reason(inst, price)
            if reason:
                return self._reject(cmd, oid, reason, out)
        stop_price = cmd.stop_price or order.stop_price
        if stop_price != order.stop_price:
            reason = self._stop_reason(inst, stop_price)
            if reason:
                return self._reject(cmd, oid, reason, out)
        quantity = cmd.quantity or order.quantity
        if quantity != order.quantity:
            reason = self._quantity_reason(inst, quantity)
            if reason:
                return self._reject(cmd, oid, reason, out)
        if cmd.display_quantity:
            return self._reject(cmd, oid, R.DISPLAY_QUANTITY_NOT_ALLOWED, out)
        clid = cmd.client_order_id
        if clid and clid != order.clid and self._clid_taken(order.account, clid):
            return self._reject(cmd, oid, R.DUPLICATE_CLIENT_ORDER_ID, out)
        if clid and clid != order.clid:
            if order.clid:
                self.finished_clids.append((order.account, order.clid))
            order.clid = clid
        kept = (price == order.price and stop_price == order.stop_price
                and quantity <= order.quantity)
        order.price, order.stop_price = price, stop_price
        order.quantity = order.leaves = quantity
        if not kept:
            order.arrival = self._arrival()
        out.append(Replaced(oid, order.account, order.clid, order.symbol, order.side, price,
                            quantity, quantity, kept, stop_price, 0))
        return None

    # -- queries ----------------------------------------------------------------------------

    def book(self, symbol: str) -> list[tuple[int, int, str, int, int, int, int, int]]:
        """Resting orders of ``symbol``: bids best first, then asks best first, FIFO."""
        bids = sorted((o for o in self.resting if o.symbol == symbol and o.side == BUY),
                      key=lambda o: (-o.price, o.arrival))
        asks = sorted((o for o in self.resting if o.symbol == symbol and o.side != BUY),
                      key=lambda o: (o.price, o.arrival))
        return [(o.order_id, o.account, o.clid, o.side, o.price, o.quantity, o.leaves,
                 o.filled, self._visible(o)) for o in bids + asks]

    def armed(self, symbol: str) -> list[tuple[int, int, int, int, int]]:
        """Armed stops of ``symbol`` in arrival order: (id, side, stop, limit, quantity)."""
        return [(o.order_id, o.side, o.stop_price, o.price, o.quantity)
                for o in sorted(self.stops, key=lambda o: o.arrival) if o.symbol == symbol]

    def depth(self) -> dict[tuple[str, int, int], tuple[int, int]]:
        """``(symbol, side, price) -> (total open quantity, order count)`` of every level."""
        levels: dict[tuple[str, int, int], tuple[int, int]] = {}
        for o in self.resting:
            total, count = levels.get((o.symbol, o.side, o.price), (0, 0))
            levels[(o.symbol, o.side, o.price)] = (total + self._visible(o), count + 1)
        return levels
