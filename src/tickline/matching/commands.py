"""Commands: the only inputs of the matching engine.

Each command carries the sequence number and timestamp (nanoseconds, engine time) that the
sequencer stamped on it; the engine never reads a clock. Commands are ``msgspec`` structs
with stable integer tags, so a command encodes to a compact MessagePack array for the
journal and the wire, and :data:`Command` decodes as a tagged union.

Tag codes (stable, journaled; never renumber):

====  ===============  =========================================
tag   command          mutates state when accepted
====  ===============  =========================================
1     NewOrder         yes
2     Cancel           yes
3     Replace          yes
4     SetTradingStatus yes (halt / resume one symbol)
5     TimeTick         yes (advances engine time: GTD expiry)
30    MassCancel       yes (all of an account's orders, filtered)
31    CancelOrders     yes (listed orders of one account)
32    SetAccountStatus yes (kill switch: disable / enable)
====  ===============  =========================================

Tags 30-39 are the account-level commands (:mod:`tickline.matching.risk`).
"""

from __future__ import annotations

import msgspec

from tickline.matching.types import GTC, LIMIT, STP_ACCOUNT_DEFAULT, CancelReason


class NewOrder(msgspec.Struct, tag=1, array_like=True, gc=False, kw_only=True):
    """Enter a new order.

    ``price`` is ignored for market and stop(-market) orders. ``expire_time`` (engine ns) is
    required for GTD. ``client_order_id`` is optional ("" = none); when given it must be
    unique per account among live and recently finished orders. ``stop_price`` (ticks) is
    required by ``STOP``/``STOP_LIMIT`` orders and refused on others; ``display_quantity``
    (lots, 0 = all visible) makes a resting limit order an iceberg.
    """

    seq: int = 0
    ts: int = 0
    account: int
    symbol: str
    side: int
    quantity: int
    price: int = 0
    order_type: int = LIMIT
    tif: int = GTC
    client_order_id: str = ""
    expire_time: int = 0
    post_only: bool = False
    stp: int = STP_ACCOUNT_DEFAULT
    stop_price: int = 0
    display_quantity: int = 0


class Cancel(msgspec.Struct, tag=2, array_like=True, gc=False, kw_only=True):
    """Cancel a live order of ``account``, by engine ``order_id`` or, when that is 0, by the
    account's ``orig_client_order_id``."""

    seq: int = 0
    ts: int = 0
    account: int
    symbol: str
    order_id: int = 0
    orig_client_order_id: str = ""
    client_order_id: str = ""


class Replace(msgspec.Struct, tag=3, array_like=True, gc=False, kw_only=True):
    """Cancel/replace a live order: a new price and/or a new total quantity.

    ``price`` 0 keeps the price; ``quantity`` 0 keeps the total quantity. ``quantity`` is the
    new *total* order quantity (as FIX OrderQty): the open quantity becomes
    ``quantity - filled`` and must stay positive. A quantity decrease at the same price keeps
    time priority; a price change or a quantity increase moves the order to the back of its
    (new) level, and a new price that crosses the book trades first.

    ``stop_price`` 0 keeps an armed stop's stop price (a non-zero one on any other order is
    rejected); ``display_quantity`` 0 keeps the display quantity (an iceberg is made fully
    visible by a display quantity equal to its total).
    """

    seq: int = 0
    ts: int = 0
    account: int
    symbol: str
    order_id: int = 0
    orig_client_order_id: str = ""
    price: int = 0
    quantity: int = 0
    client_order_id: str = ""
    stop_price: int = 0
    display_quantity: int = 0


class SetTradingStatus(msgspec.Struct, tag=4, array_like=True, gc=False, kw_only=True):
    """Halt (``halted=True``) or resume trading in one symbol. While halted, new orders and
    replaces are rejected; cancels are still accepted."""

    seq: int = 0
    ts: int = 0
    symbol: str
    halted: bool


class TimeTick(msgspec.Struct, tag=5, array_like=True, gc=False, kw_only=True):
    """Advance engine time with no other effect, so GTD orders expire on time when no other
    command arrives. The sequencer emits these on a timer; they are journaled like any
    command so replay expires the same orders at the same point."""

    seq: int = 0
    ts: int = 0


class MassCancel(msgspec.Struct, tag=30, array_like=True, gc=False, kw_only=True):
    """Cancel every live order of ``account``; ``symbol`` "" means every symbol, ``side`` 0
    both sides (else 1 buy, 2 sell).

    Emits one ``Cancelled`` (reason ``MASS_CANCEL``) per order, symbols in sorted order and
    order ids ascending within a symbol, each followed by its ``LevelChanged``; then one
    ``MassCancelled`` with the count (0 when nothing was open). Accepted while the symbol is
    halted and while the account is disabled. An unknown symbol or a bad side is rejected.
    """

    seq: int = 0
    ts: int = 0
    account: int
    symbol: str = ""
    side: int = 0


class CancelOrders(msgspec.Struct, tag=31, array_like=True, gc=False, kw_only=True):
    """Cancel the listed engine order ids of ``account``, with ``reason`` (a
    :class:`~tickline.matching.types.CancelReason`: ``USER``, ``MASS_CANCEL``,
    ``CANCEL_ON_DISCONNECT`` or ``KILL_SWITCH``; others are rejected).

    Ids that are no longer live, or are not the account's, are skipped silently (they
    finished in the meantime; a foreign id is treated as gone, revealing nothing). Events as
    for :class:`MassCancel`, in the same order (symbol, then order id), then one
    ``MassCancelled`` with symbol "" and side 0. Built for cancel-on-disconnect: the session
    layer lists the orders that session entered.
    """

    seq: int = 0
    ts: int = 0
    account: int
    order_ids: tuple[int, ...]
    reason: int = int(CancelReason.CANCEL_ON_DISCONNECT)


class SetAccountStatus(msgspec.Struct, tag=32, array_like=True, gc=False, kw_only=True):
    """The kill switch. ``enabled=False`` cancels all of the account's live orders (reason
    ``KILL_SWITCH``, in :class:`MassCancel` order) and from then on rejects its new orders
    and replaces with ``ACCOUNT_DISABLED``; its cancels still work. ``enabled=True`` lifts
    it. Either way one ``AccountStatusChanged`` follows (idempotent: disabling a disabled
    account cancels nothing and says so again)."""

    seq: int = 0
    ts: int = 0
    account: int
    enabled: bool


Command = (NewOrder | Cancel | Replace | SetTradingStatus | TimeTick | MassCancel | CancelOrders
           | SetAccountStatus)
"""The tagged union of every engine input."""

COMMAND_TYPES: tuple[type[Command], ...] = (
    NewOrder, Cancel, Replace, SetTradingStatus, TimeTick, MassCancel, CancelOrders,
    SetAccountStatus,
)
