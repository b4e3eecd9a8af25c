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
  orders sorted by symbol then order id, then one summary event; a disabled account's new
  order is rejected after every other check (risk limits are not modelled here).
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
)

LIMIT, MARKET = 1, 2
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


class ReferenceMatcher:
    def __init__(self, instruments: list[Instrument], config: EngineConfig) -> None:
        self.instruments = {i.symbol: i for i in instruments}
        self.config = config
        self.halted: set[str] = set()
        self.disabled: set[int] = set()
        self.resting: list[RefOrder] = []
        self.finished_clids: list[tuple[int, str]] = []
        self.next_order_id = 1
        self.next_trade_id = 1
        self.arrivals = 0

    # -- helpers --------------------------------------------------------------------------

    def _arrival(self) -> int:
        self.arrivals += 1
        return self.arrivals

    def _clid_taken(self, account: int, clid: str) -> bool:
        if any(o.account == account and o.clid == clid for o in self.resting):
            return True
        memory = self.config.client_id_memory
        return memory > 0 and (account, clid) in self.finished_clids[-memory:]

    def _finished(self, order: RefOrder) -> None:
        if order in self.resting:
            self.resting.remove(order)
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
        """Trade ``taker`` against the opposite side down to ``limit`` (None: any price)."""
        for maker in self._opposite(taker):
            if not self._within(taker, limit, maker.price):
                return
            if maker.account == taker.account and taker.stp != STPMode.OFF:
                if taker.stp in (STPMode.CANCEL_OLDEST, STPMode.CANCEL_BOTH):
                    self._cancel(maker, C.SELF_TRADE, out)
                if taker.stp != STPMode.CANCEL_OLDEST:
                    self._cancel(taker, C.SELF_TRADE, out)
                    return
                continue
            qty = min(taker.leaves, maker.leaves)
            maker.leaves -= qty
            maker.filled += qty
            taker.leaves -= qty
            taker.filled += qty
            out.append(Trade(self.next_trade_id, taker.symbol, maker.price, qty, taker.side,
                             maker.order_id, maker.account, maker.leaves, taker.order_id,
                             taker.account, taker.leaves))
            self.next_trade_id += 1
            if maker.leaves == 0:
                self._finished(maker)
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
        due = sorted((o for o in self.resting if o.tif == GTD and o.expire_time <= cmd.ts),
                     key=lambda o: (o.expire_time, o.order_id))
        for o in due:
            out.append(Expired(o.order_id, o.account, o.symbol, o.side, o.price, o.leaves))
            o.leaves = 0
            self._finished(o)
        if isinstance(cmd, NewOrder):
            self._new(cmd, out)
        elif isinstance(cmd, Cancel):
            order = self._find(cmd, out)
            if order is not None:
                self._cancel(order, C.USER, out)
        elif isinstance(cmd, Replace):
            self._replace(cmd, out)
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
                mine = [o for o in self.resting if o.account == cmd.account
                        and cmd.symbol in ("", o.symbol) and cmd.side in (0, o.side)]
                self._cancel_all(mine, C.MASS_CANCEL, out)
                out.append(MassCancelled(cmd.account, cmd.symbol, cmd.side,
                                         int(C.MASS_CANCEL), len(mine)))
        elif isinstance(cmd, CancelOrders):
            if cmd.reason not in (C.USER, C.MASS_CANCEL, C.CANCEL_ON_DISCONNECT, C.KILL_SWITCH):
                out.append(Rejected(cmd.account, "", "", 0, int(R.INVALID_CANCEL_REASON), ""))
            else:
                mine = [o for o in self.resting if o.account == cmd.account
                        and o.order_id in cmd.order_ids]
                self._cancel_all(mine, C(cmd.reason), out)
                out.append(MassCancelled(cmd.account, "", 0, cmd.reason, len(mine)))
        elif isinstance(cmd, SetAccountStatus):
            mine = []
            if cmd.enabled:
                self.disabled.discard(cmd.account)
            else:
                self.disabled.add(cmd.account)
                mine = [o for o in self.resting if o.account == cmd.account]
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
        if cmd.order_type == LIMIT:
            reason = self._price_reason(inst, price)
            if reason:
                return self._reject(cmd, 0, reason, out)
        elif cmd.order_type == MARKET:
            if cmd.post_only:
                return self._reject(cmd, 0, R.MARKET_ORDER_NOT_ALLOWED, out)
            price = 0
            tif = FOK if tif == FOK else IOC
        else:
            return self._reject(cmd, 0, R.INVALID_ORDER_TYPE, out)
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
                         self._arrival(), cmd.order_type == MARKET)
        limit = None if order.is_market else price
        if cmd.post_only and self._crosses(order, limit):
            return self._reject(cmd, 0, R.POST_ONLY_WOULD_TAKE, out)
        if cmd.account in self.disabled:
            return self._reject(cmd, 0, R.ACCOUNT_DISABLED, out)
        self.next_order_id += 1
        out.append(Accepted(order.order_id, order.account, order.clid, order.symbol,
                            order.side, cmd.order_type, tif, price, order.quantity))
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
        self.resting.append(order)
        return None

    def _find(self, cmd: Cancel | Replace, out: list[Event]) -> RefOrder | None:
        if cmd.order_id == 0 and cmd.orig_client_order_id:
            found = [o for o in self.resting if o.account == cmd.account
                     and o.clid == cmd.orig_client_order_id]
        else:
            found = [o for o in self.resting if o.order_id == cmd.order_id]
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
        keeps_priority = price == order.price and quantity <= order.quantity
        order.price = price
        order.quantity = quantity
        order.leaves = quantity - order.filled
        out.append(Replaced(order.order_id, order.account, order.clid, order.symbol,
                            order.side, price, quantity, order.leaves, keeps_priority))
        if keeps_priority:
            return None
        order.arrival = self._arrival()
        self.resting.remove(order)  # while it takes, it is not in the book
        if self._take(order, price, out):
            self.resting.append(order)
        return None

    # -- queries ----------------------------------------------------------------------------

    def book(self, symbol: str) -> list[tuple[int, int, str, int, int, int, int, int]]:
        """Resting orders of ``symbol``: bids best first, then asks best first, FIFO."""
        bids = sorted((o for o in self.resting if o.symbol == symbol and o.side == BUY),
                      key=lambda o: (-o.price, o.arrival))
        asks = sorted((o for o in self.resting if o.symbol == symbol and o.side != BUY),
                      key=lambda o: (o.price, o.arrival))
        return [(o.order_id, o.account, o.clid, o.side, o.price, o.quantity, o.leaves,
                 o.filled) for o in bids + asks]

    def depth(self) -> dict[tuple[str, int, int], tuple[int, int]]:
        """``(symbol, side, price) -> (total open quantity, order count)`` of every level."""
        levels: dict[tuple[str, int, int], tuple[int, int]] = {}
        for o in self.resting:
            total, count = levels.get((o.symbol, o.side, o.price), (0, 0))
            levels[(o.symbol, o.side, o.price)] = (total + o.leaves, count + 1)
        return levels
