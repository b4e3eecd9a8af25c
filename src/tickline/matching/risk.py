"""Account controls in the engine: mass cancel, cancel-a-list, the kill switch, and pre-trade
risk limits per account.

Everything here runs inside :class:`~tickline.matching.engine.MatchingEngine` (it is a mixin
of it, :class:`RiskControls`): pure, deterministic, driven only by journaled commands and the
engine's config, so a replay reproduces every cancel and every risk reject.

**Commands** (tags 30-39, see :mod:`tickline.matching.commands`): ``MassCancel``,
``CancelOrders``, ``SetAccountStatus``. Each cancels with ordinary ``Cancelled`` events (each
followed by its ``LevelChanged``), orders sorted by symbol then order id, and ends with one
summary event: ``MassCancelled(account, symbol, side, reason, count)`` or
``AccountStatusChanged(account, enabled, cancelled)``.

**Limits** (:class:`RiskLimits`, per account in ``EngineConfig.account_limits``; 0 = none),
checked after every other validation of a new order or replace (so a malformed order gets
its shape reject first), in this order:

=====================  ====================  ================================================
check                  reject                rule
=====================  ====================  ================================================
kill switch            ``ACCOUNT_DISABLED``  the account is disabled (new orders, replaces)
max_order_quantity     ``RISK_MAX_QUANTITY``  order quantity (a replace: the new total) > max
max_order_notional     ``RISK_MAX_NOTIONAL``  price x quantity (ticks x lots) > max; see below
max_open_orders        ``RISK_MAX_OPEN_..``  a GTC/GTD order when the account already has
                                             max live orders (IOC/FOK/market never rest)
max_position           ``RISK_MAX_POSITION``  ``|position + q|`` > max, ``q`` the signed open
                                             quantity the order could add if fully filled,
                                             unless the order shrinks ``|position|``
=====================  ====================  ================================================

*Market order notional*: a market order has no price, so it is valued at the highest price it
could trade at: for a buy, the ask level where its quantity would be exhausted walking the
book from the best ask (stopping at the protection band when the instrument has one; the last
level reached when the book is too thin); for a sell, the best bid. An empty opposite side
values it at 0 (it will trade nothing). A replace is checked when it changes the price or the
quantity (notional of the new price x new total quantity), and for quantity increases
(quantity, position with the new open quantity). Reducing replaces are never rejected by a
limit.

*Positions* are net filled quantity per ``(account, symbol)`` (buys minus sells), updated on
every trade for both parties; they are engine state (snapshot, digest). They are tracked only
when some account has ``max_position`` (and open-order counts only when some account has
``max_position`` or ``max_open_orders``: those are derived from the live orders).

*State layout.* The per-account state lives in native objects, not in dicts keyed by
account: an :class:`~tickline.matching.book.AccountRisk` per account (thresholds, live-order
count) and an :class:`~tickline.matching.book.Exposure` per account and symbol (net
position, a copy of the thresholds), which the symbol's book indexes
(``OrderBook.exposures``) and every live order of that account there points at
(``Order.exposure``). A new order finds its exposure in one int-keyed lookup; a fill
updates the maker's position through ``maker.exposure`` and the taker's once per match;
finishing an order decrements ``order.exposure.risk.open``. Nothing on those paths
allocates under mypyc (native ``int`` fields: no boxed int, no dict entry written).

*Cost.* An engine without limits pays one flag test per new order, one ``is None`` test per
fill, match and finish, and one comparison per price-only move (the move price floor). With
all four limits on every account, new orders (and general replaces) take an inline fast pass
against thresholds clamped to ``FAST_CAP`` (one-digit ints: CPython 3.11 compares those on
its specialized path, and only inside an ``if``); the exact check, with its reject texts,
runs only for an order that may breach a limit.

Measured (issue 9, 2026-12-02; docs/benchmarks.md "Risk limits" has the commands):
instructions per command by ``valgrind --tool=callgrind`` on a fixed 40,000-command
exchange-core workload, loop minus setup, ``PYTHONHASHSEED=0``, generous limits on all 1,000
accounts vs none: compiled build **+0.40%** (was +4.96% with the positions and open counts
in dicts keyed by account), pure build **+2.89%** (was +5.22%). The dicts cost more than
their instructions in CPU time (a boxed int allocated per update, a random probe into a
1,000-entry table per fill): most of the old CPU-time gap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tickline.matching.book import (
    EMPTY,
    NEXT_BEST_SCAN,
    AccountRisk,
    BookSide,
    Exposure,
    Order,
    OrderBook,
)
from tickline.matching.commands import CancelOrders, MassCancel, NewOrder, Replace, SetAccountStatus
from tickline.matching.engine_types import LIMIT_FIELDS, RiskLimits
from tickline.matching.events import (
    AccountStatusChanged,
    Event,
    LevelChanged,
    MassCancelled,
    Rejected,
)
from tickline.matching.stops import cancel_stop
from tickline.matching.types import (
    BUY,
    GTC,
    GTD,
    MARKET,
    SELL,
    CancelReason,
    RejectReason,
)

if TYPE_CHECKING:
    from tickline.matching.commands import Cancel, Command, SetTradingStatus

R_DISABLED: Final = int(RejectReason.ACCOUNT_DISABLED)
R_RISK_QTY: Final = int(RejectReason.RISK_MAX_QUANTITY)
R_RISK_NOTIONAL: Final = int(RejectReason.RISK_MAX_NOTIONAL)
R_RISK_OPEN: Final = int(RejectReason.RISK_MAX_OPEN_ORDERS)
R_RISK_POSITION: Final = int(RejectReason.RISK_MAX_POSITION)
R_CANCEL_REASON: Final = int(RejectReason.INVALID_CANCEL_REASON)
R_UNKNOWN_SYMBOL: Final = int(RejectReason.UNKNOWN_SYMBOL)
R_SIDE: Final = int(RejectReason.INVALID_SIDE)

C_MASS: Final = int(CancelReason.MASS_CANCEL)
C_KILL: Final = int(CancelReason.KILL_SWITCH)

ACCOUNT_CANCEL_REASONS: frozenset[int] = frozenset(
    int(r) for r in (CancelReason.USER, CancelReason.MASS_CANCEL,
                     CancelReason.CANCEL_ON_DISCONNECT, CancelReason.KILL_SWITCH))
"""The reasons a ``CancelOrders`` command may carry (the engine's own — IOC remainder,
self-trade, ... — describe what the engine did, so no caller may claim them)."""

NO_CAP = 1 << 62
"""Above every real quantity, notional and price."""

FAST_CAP = (1 << 30) - 1
"""The ceiling of every threshold of the hot path's fast passes (:attr:`RiskControls._caps`,
the move price floor). CPython 3.11 compares two ints on its specialized fast path only when
both fit one 30-bit digit; a comparison with a bigger int (``10**12``, ``1 << 62``) takes
the generic path at about twice the cost, on every order. A clamped threshold is still
safe: a value above it is only *suspect* and gets the exact check, which uses the real
limits."""

# Compiled by mypyc, a module-level name is looked up in the module's dict on every use
# unless it is ``Final`` (then a C static): the classes and constants the hot paths use
# are Final (pure Python reads both kinds the same way).
_Rejected: Final = Rejected
_LevelChanged: Final = LevelChanged
_MassCancelled: Final = MassCancelled
_AccountStatusChanged: Final = AccountStatusChanged
_MassCancel: Final = MassCancel
_CancelOrders: Final = CancelOrders
_SetAccountStatus: Final = SetAccountStatus


def market_reach_price(opposite: BookSide, side: int, quantity: int, band_key: int) -> int:
    """The price a market order of ``quantity`` on ``side`` is valued at for the notional
    limit (module doc): for a buy, the price of the ask level where ``quantity`` is used up
    walking from the best (not beyond ``band_key``, the protection band's key, or the last
    level); for a sell, the best bid. 0 when ``opposite`` is empty.

    O(1) for a sell. For a buy it steps tick by tick from the best ask, as
    :meth:`BookSide.drop_level` does (at most ``NEXT_BEST_SCAN`` dict lookups: the quantity
    is almost always used up within a few ticks), and only then sorts the remaining levels
    (O(L log L)). Only used when the account has a notional limit."""
    best = opposite.best
    if best == EMPTY:
        return 0
    sign = opposite.sign
    if side == SELL:
        return best * sign
    levels = opposite.levels
    step = opposite.step
    key = reached = best
    got = 0
    for _ in range(NEXT_BEST_SCAN):
        if key < band_key:
            return reached * sign
        level = levels.get(key * sign)
        if level is not None:
            reached = key
            got += level.total
            if got >= quantity:
                return reached * sign
        key -= step
    for deeper in sorted((p * sign for p in levels if p * sign <= key), reverse=True):
        if deeper < band_key:
            break
        reached = deeper
        got += levels[deeper * sign].total
        if got >= quantity:
            break
    return reached * sign


class RiskControls:
    """The account controls of :class:`~tickline.matching.engine.MatchingEngine` (its base
    class: the slots below are this part of the engine's state; the engine's own books and
    live orders are only declared here for the type checker).

    State (all set up by :meth:`_init_risk`):

    * ``_limits``: account → :class:`RiskLimits`, only accounts with a limit;
    * ``_disabled``: accounts whose kill switch is on;
    * ``_accounts``: account → :class:`~tickline.matching.book.AccountRisk`, for every
      account with a limit or a kill switch on, and while exposures are tracked for every
      account that has had an order or a position too. Its thresholds serve the engine's
      inline fast pass (it calls :meth:`_pretrade_new`, the exact check that also rejects
      a disabled account, only when an order may breach something): each limit clamped
      to ``FAST_CAP``; quantity and notional ``FAST_CAP`` where unset, open orders and
      position 0 where unset (not checked); all zeros for a disabled account (quantity 0:
      every order is suspect);
    * ``_gated``: ``bool(_limits or _disabled)`` — the one flag the hot path tests;
    * ``_tracking``: exposures are tracked (some account has ``max_position`` or
      ``max_open_orders``): every live order carries its account's
      :class:`~tickline.matching.book.Exposure` in its symbol (``Order.exposure``), which
      holds the net filled position, and whose account state holds the live-order count;
      the matching loop updates a maker's position with one native attribute access per
      fill and the taker's once per match, and finishing an order decrements its
      account's count, with no dict lookup;
    * ``_track_positions``: positions are engine state (snapshot, digest): some account
      has ``max_position``;
    * ``_move_price_floor``: a price at or below which no order can breach any account's
      notional limit (``FAST_CAP`` when no account has one, and never above it): the smallest
      ``max_order_notional // largest quantity`` over the accounts with a notional limit,
      the largest quantity being the account's ``max_order_quantity``, else the largest
      instrument ``max_quantity`` (0 — every move takes the exact path — when neither
      bounds it). The engine's fast replace path (a price-only move, the commonest command)
      then pays no comparison for it, with or without limits: every book's
      ``move_max_price`` includes it. (A disabled account never has a
      live order to replace: the switch cancels them all, and ``check()`` asserts it.)
    """

    __slots__ = ("_accounts", "_disabled", "_gated", "_limits", "_move_price_floor",
                 "_track_positions", "_tracking")

    _limits: dict[int, RiskLimits]
    _accounts: dict[int, AccountRisk]
    _disabled: set[int]
    _gated: bool
    _tracking: bool
    _track_positions: bool
    _move_price_floor: int

    # What these methods need from the engine, declared for real (not only for the type
    # checker): mypyc compiles this class to a native class, whose attributes and methods
    # must all be declared in its body. ``MatchingEngine`` sets the two attributes in its
    # ``__init__`` and overrides the three methods; calling a stub is a bug.
    books: dict[str, OrderBook]
    orders: dict[int, Order]

    def _cancel_rest(self, order: Order, out: list[Event], reason: int) -> None:
        """Cancel a resting ``order`` (the engine's :meth:`MatchingEngine._cancel_rest`)."""
        raise NotImplementedError

    def _protect(self, book: OrderBook, opposite: BookSide, limit_key: int) -> int:
        """The price-protection bound (the engine's :meth:`MatchingEngine._protect`)."""
        raise NotImplementedError

    @staticmethod
    def _reject(out: list[Event], cmd: NewOrder | Cancel | Replace | SetTradingStatus
                | MassCancel, order_id: int, reason: int, text: str) -> None:
        """Append a :class:`Rejected` (the engine's :meth:`MatchingEngine._reject`)."""
        raise NotImplementedError

    def _init_risk(self, account_limits: dict[int, RiskLimits]) -> None:
        for account, limits in account_limits.items():
            limits.validate(f"account {account}")
        self._limits = {a: lim for a, lim in account_limits.items() if lim.active}
        self._disabled = set()
        self._accounts = {}
        self._track_positions = any(lim.max_position for lim in self._limits.values())
        self._tracking = self._track_positions or any(
            lim.max_open_orders for lim in self._limits.values())
        self._update_gate()
        self._on_instruments()

    def _on_instruments(self, symbol: str = "") -> None:
        """After the instruments changed (``symbol`` added; "" any): the limited and
        disabled accounts' exposures in the new book, and ``_move_price_floor``, which
        depends on the instruments' max quantities."""
        for account in (*self._limits, *self._disabled):
            for name in (symbol,) if symbol else self.books:
                self._exposure(account, name)
        quantities = [book.instrument.max_quantity for book in self.books.values()]
        largest = max(quantities) if quantities and all(quantities) else 0
        floor = NO_CAP
        for limits in self._limits.values():
            if limits.max_order_notional:
                bound = limits.max_order_quantity or largest
                floor = min(floor, limits.max_order_notional // bound if bound else 0)
        self._move_price_floor = min(floor, FAST_CAP)
        for book in self.books.values():
            self._set_move_bound(book)

    def _set_move_bound(self, book: OrderBook) -> None:
        """The one upper price bound of the move fast path (replace.py) in ``book``: its
        max price and the move price floor, or 0 while it is halted (every move then takes
        the general path, which rejects it). Called when either changes."""
        book.move_max_price = 0 if book.halted else min(book.max_price,
                                                        self._move_price_floor)

    def _update_gate(self) -> None:
        """Recompute ``_gated`` and the accounts' thresholds after the disabled set
        changed. A limited or disabled account has an exposure in every book (the fast
        pass finds it there); another account gets one on its first order while exposures
        are tracked, and keeps it (with no thresholds: ``FAST_CAP``, ``FAST_CAP``, 0, 0);
        untracked, an account whose kill switch goes off without limits loses its."""
        self._gated = bool(self._limits or self._disabled)
        cap = FAST_CAP
        for account in list(self._accounts):
            if account in self._limits or account in self._disabled:
                continue
            if self._tracking:  # no limit (any more): the switch is off
                self._accounts[account].set_caps(cap, cap, 0, 0)
            else:  # its kill switch made it, and the switch cancelled every order of it
                risk = self._accounts.pop(account)  # (and rejected all since): nothing
                for symbol in risk.by_symbol:  # hangs on it
                    del self.books[symbol].exposures[account]
        for account, lim in self._limits.items():
            self._account_risk(account).set_caps(
                min(lim.max_order_quantity or cap, cap), min(lim.max_order_notional or cap, cap),
                min(lim.max_open_orders, cap), min(lim.max_position, cap))
        for account in self._disabled:  # every order is suspect: the exact check
            self._account_risk(account).set_caps(0, 0, 0, 0)
            for symbol in self.books:
                self._exposure(account, symbol)

    def _account_risk(self, account: int) -> AccountRisk:
        """The state of ``account`` (created without limits: the caller sets them)."""
        risk = self._accounts.get(account)
        if risk is None:
            risk = self._accounts[account] = AccountRisk(account, FAST_CAP, FAST_CAP, 0, 0)
        return risk

    def _exposure(self, account: int, symbol: str) -> Exposure:
        """``account``'s exposure in ``symbol`` (created flat, with the account's
        thresholds, and entered in the book's ``exposures``)."""
        risk = self._account_risk(account)
        exposure = risk.by_symbol.get(symbol)
        if exposure is None:
            exposure = risk.by_symbol[symbol] = Exposure(risk, symbol)
            self.books[symbol].exposures[account] = exposure
        return exposure

    # -- commands -------------------------------------------------------------------------

    def _account_command(self, cmd: Command, out: list[Event]) -> None:
        """Dispatch a command of tags 30-39; ``TypeError`` for anything else."""
        kind = type(cmd)
        if kind is _MassCancel:
            self._mass_cancel(cmd, out)  # type: ignore[arg-type]
        elif kind is _CancelOrders:
            self._cancel_orders(cmd, out)  # type: ignore[arg-type]
        elif kind is _SetAccountStatus:
            self._set_account_status(cmd, out)  # type: ignore[arg-type]
        else:
            raise TypeError(f"not a command: {cmd!r}")

    def _mass_cancel(self, cmd: MassCancel, out: list[Event]) -> None:
        symbol = cmd.symbol
        side = cmd.side
        if symbol and symbol not in self.books:
            return self._reject(out, cmd, 0, R_UNKNOWN_SYMBOL, f"unknown symbol {symbol!r}")
        if side != 0 and side != BUY and side != SELL:
            return self._reject(out, cmd, 0, R_SIDE,
                                f"side must be 0 (both), 1 (buy) or 2 (sell), got {side}")
        account = cmd.account
        targets = [o for o in self.orders.values() if o.account == account
                   and (not symbol or o.symbol == symbol) and (not side or o.side == side)]
        count = self._cancel_all(targets, C_MASS, out)
        out.append(_MassCancelled(account, symbol, side, C_MASS, count))
        return None

    def _cancel_orders(self, cmd: CancelOrders, out: list[Event]) -> None:
        account = cmd.account
        reason = cmd.reason
        if reason not in ACCOUNT_CANCEL_REASONS:
            out.append(_Rejected(account, "", "", 0, R_CANCEL_REASON,
                                 f"cancel reason must be one of "
                                 f"{sorted(ACCOUNT_CANCEL_REASONS)}, got {reason}"))
            return
        orders = self.orders
        targets = []
        for order_id in dict.fromkeys(cmd.order_ids):  # a repeated id is cancelled once
            order = orders.get(order_id)
            if order is not None and order.account == account:
                targets.append(order)
        count = self._cancel_all(targets, reason, out)
        out.append(_MassCancelled(account, "", 0, reason, count))

    def _set_account_status(self, cmd: SetAccountStatus, out: list[Event]) -> None:
        account = cmd.account
        count = 0
        if cmd.enabled:
            self._disabled.discard(account)
        else:
            self._disabled.add(account)
            count = self._cancel_all([o for o in self.orders.values() if o.account == account],
                                     C_KILL, out)
        self._update_gate()
        out.append(_AccountStatusChanged(account, cmd.enabled, count))

    def _cancel_all(self, targets: list[Order], reason: int, out: list[Event]) -> int:
        """Cancel live ``targets`` (symbol, then order id) as a user cancel does: out of the
        level, ``Cancelled``, ``LevelChanged``. Returns how many."""
        targets.sort(key=_symbol_then_id)
        books = self.books
        for order in targets:
            if order.stop_price:  # an armed stop: not in a level, nothing visible changes
                cancel_stop(self, order, out, reason)  # type: ignore[arg-type]
                continue
            level = books[order.symbol].side(order.side).remove(order)
            self._cancel_rest(order, out, reason)
            out.append(_LevelChanged(order.symbol, order.side, level.price, level.total,
                                     len(level.orders)))
        return len(targets)

    # -- pre-trade checks -----------------------------------------------------------------

    def _pretrade_new(self, cmd: NewOrder, book: OrderBook, opposite: BookSide, price: int,
                      tif: int, limit_key: int, out: list[Event]) -> bool:
        """Reject (and return True) a validated new order of a disabled account or one that
        breaches its account's limits; False lets it through. Changes nothing else."""
        account = cmd.account
        if account in self._disabled:
            self._reject(out, cmd, 0, R_DISABLED, f"account {account} is disabled")
            return True
        limits = self._limits.get(account)
        if limits is None:
            return False
        quantity = cmd.quantity
        cap = limits.max_order_quantity
        if cap and quantity > cap:
            self._reject(out, cmd, 0, R_RISK_QTY,
                         f"quantity {quantity} exceeds max_order_quantity {cap} "
                         f"of account {account}")
            return True
        cap = limits.max_order_notional
        if cap:
            if cmd.order_type == MARKET:
                price = market_reach_price(opposite, cmd.side, quantity,
                                           self._protect(book, opposite, limit_key))
            notional = price * quantity
            if notional > cap:
                self._reject(out, cmd, 0, R_RISK_NOTIONAL,
                             f"notional {notional} ({price} x {quantity}) exceeds "
                             f"max_order_notional {cap} of account {account}")
                return True
        cap = limits.max_open_orders
        if cap and (tif == GTC or tif == GTD):
            risk = self._accounts.get(account)
            open_orders = risk.open if risk is not None else 0
            if open_orders >= cap:
                self._reject(out, cmd, 0, R_RISK_OPEN,
                             f"account {account} has {open_orders} open orders, "
                             f"max_open_orders {cap}")
                return True
        cap = limits.max_position
        if cap:
            position = self.position(account, cmd.symbol)
            after = position + quantity if cmd.side == BUY else position - quantity
            if after > cap or -after > cap:  # (inlined: this runs for every new order)
                text = _position_breach(position, after - position, cap, account,
                                        cmd.symbol)
                if text:
                    self._reject(out, cmd, 0, R_RISK_POSITION, text)
                    return True
        return False

    def _pretrade_replace(self, cmd: Replace, order: Order, price: int, quantity: int,
                          out: list[Event]) -> bool:
        """As :meth:`_pretrade_new` for a validated replace of ``order`` to ``price`` and the
        new total ``quantity``."""
        account = order.account
        order_id = order.order_id
        if account in self._disabled:
            self._reject(out, cmd, order_id, R_DISABLED, f"account {account} is disabled")
            return True
        limits = self._limits.get(account)
        if limits is None:
            return False
        grows = quantity > order.quantity
        cap = limits.max_order_quantity
        if cap and grows and quantity > cap:
            self._reject(out, cmd, order_id, R_RISK_QTY,
                         f"quantity {quantity} exceeds max_order_quantity {cap} "
                         f"of account {account}")
            return True
        cap = limits.max_order_notional
        if cap and (grows or price != order.price):
            notional = price * quantity
            if notional > cap and notional > order.price * order.quantity:
                self._reject(out, cmd, order_id, R_RISK_NOTIONAL,
                             f"notional {notional} ({price} x {quantity}) exceeds "
                             f"max_order_notional {cap} of account {account}")
                return True
        cap = limits.max_position
        if cap and grows:
            leaves = quantity - order.filled
            text = _position_breach(self.position(account, order.symbol),
                                    leaves if order.side == BUY else -leaves, cap, account,
                                    order.symbol)
            if text:
                self._reject(out, cmd, order_id, R_RISK_POSITION, text)
                return True
        return False

    # -- queries ----------------------------------------------------------------------------

    def positions(self) -> dict[tuple[int, str], int]:
        """Every non-zero net filled position, ``(account, symbol) -> lots`` (buys minus
        sells); empty when positions are not tracked (no account has ``max_position``)."""
        if not self._track_positions:
            return {}
        return {(account, symbol): exposure.net for account, risk in self._accounts.items()
                for symbol, exposure in risk.by_symbol.items() if exposure.net}

    def position(self, account: int, symbol: str) -> int:
        """``account``'s net filled position in ``symbol`` (0 when not tracked)."""
        if not self._track_positions:
            return 0
        risk = self._accounts.get(account)
        exposure = risk.by_symbol.get(symbol) if risk is not None else None
        return exposure.net if exposure is not None else 0

    def open_counts(self) -> dict[int, int]:
        """Live orders per account (accounts with any), while open counts are tracked (some
        account has ``max_position`` or ``max_open_orders``); else empty."""
        if not self._tracking:
            return {}
        return {account: risk.open for account, risk in self._accounts.items() if risk.open}

    def disabled_accounts(self) -> list[int]:
        """The accounts whose kill switch is on, sorted."""
        return sorted(self._disabled)

    # -- state: snapshots, digest, invariants ---------------------------------------------

    def _recount_open(self) -> None:
        """After a restore: attach every live order's exposure (tracked: created if need
        be; else only a limited or disabled account has one) and rebuild the open-order
        counts from the live orders."""
        for risk in self._accounts.values():
            risk.open = 0
        for order in self.orders.values():
            exposure = (self._exposure(order.account, order.symbol) if self._tracking
                        else self.books[order.symbol].exposures.get(order.account))
            order.exposure = exposure
            if exposure is not None:
                exposure.risk.open += 1

    def _risk_digest(self) -> bytes:
        """The account-control state for :meth:`MatchingEngine.digest` (empty when there is
        none, so an engine without it digests as before)."""
        parts = []
        if self._disabled:
            parts.append(b"disabled:" + b",".join(b"%d" % a for a in sorted(self._disabled)))
        positions = self.positions()
        if positions:
            parts.append(b"positions:" + b";".join(
                b"%d:%s:%d" % (a, s.encode(), q) for (a, s), q in sorted(positions.items())))
        return b"|".join(parts)

    def _check_risk(self) -> None:
        """Invariants: every live order carries its account's exposure in its symbol (the
        book's; always one while exposures are tracked), an account's open count is its
        live orders that carry one, the books' exposures are the accounts' with their
        thresholds, per symbol the positions sum to zero (every trade has a buyer and a
        seller), and a disabled account has no live order."""
        counts: dict[int, int] = {}
        for order in self.orders.values():
            exposure = self.books[order.symbol].exposures.get(order.account)
            assert order.exposure is exposure and (exposure is not None
                                                   or not self._tracking), (
                f"order {order.order_id} does not carry its account's exposure")
            if exposure is not None:
                counts[order.account] = counts.get(order.account, 0) + 1
            assert order.account not in self._disabled, (
                f"disabled account {order.account} has live order {order.order_id}")
        opened = {a: r.open for a, r in self._accounts.items() if r.open}
        assert opened == counts, f"open counts {opened} != live {counts}"
        sums: dict[str, int] = {}
        for account, risk in self._accounts.items():
            assert risk.account == account
            for symbol, exposure in risk.by_symbol.items():
                assert exposure.risk is risk and exposure.symbol == symbol
                assert self.books[symbol].exposures[account] is exposure
                assert (exposure.max_quantity, exposure.max_notional, exposure.max_open,
                        exposure.max_position) == (risk.max_quantity, risk.max_notional,
                                                   risk.max_open, risk.max_position)
                sums[symbol] = sums.get(symbol, 0) + exposure.net
        for symbol, book in self.books.items():
            for account, exposure in book.exposures.items():
                assert self._accounts[account].by_symbol[symbol] is exposure
        if self._track_positions:
            assert not any(sums.values()), f"positions do not net to zero: {sums}"


def _symbol_then_id(order: Order) -> tuple[str, int]:
    return (order.symbol, order.order_id)


def _position_breach(position: int, adds: int, cap: int, account: int, symbol: str) -> str:
    """The reject text when ``position + adds`` breaches ``cap`` and does not shrink the
    absolute position; "" when the order is allowed."""
    after = position + adds
    if abs(after) <= cap or abs(after) < abs(position):
        return ""
    return (f"position {after} in {symbol} if filled (now {position}) exceeds max_position "
            f"{cap} of account {account}")


__all__ = ["ACCOUNT_CANCEL_REASONS", "LIMIT_FIELDS", "RiskControls", "RiskLimits",
           "market_reach_price"]
