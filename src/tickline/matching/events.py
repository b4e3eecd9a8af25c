"""Events: the only outputs of the matching engine.

Events are immutable-by-convention ``msgspec`` structs with stable integer tags (never
renumber); they encode to MessagePack or JSON arrays for journals, wires and byte-for-byte
comparison of runs. They do not repeat the command's sequence number and timestamp: the
engine returns the events of one command together, and the caller pairs them with it.

====  ==============  ===============================================================
tag   event           meaning
====  ==============  ===============================================================
1     Accepted        a new order passed validation and got an engine order id
2     Rejected        a command failed validation; nothing changed
3     Trade           a maker and a taker traded at the maker's price
4     Cancelled       an order or its remainder left the book (reason says why)
5     Replaced        an order took a new price and/or quantity
6     Expired         a GTD order reached its expiry time
7     LevelChanged    a price level's new total quantity and order count (0/0 = gone)
8     StatusChanged   a symbol was halted or resumed
20    Triggered       an armed stop's stop price was touched: it enters the book now
30    MassCancelled   a MassCancel/CancelOrders finished: how many orders it cancelled
31    AccountStatus-  an account was disabled (kill switch) or enabled
      Changed
====  ==============  ===============================================================
"""

from __future__ import annotations

import msgspec


class Accepted(msgspec.Struct, tag=1, array_like=True, gc=False):
    """``quantity`` is the order's total; ``stop_price`` is set for ``STOP``/``STOP_LIMIT``
    orders (which are armed, not in the book, until a :class:`Triggered`);
    ``display_quantity`` for icebergs (0: all visible)."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    order_type: int
    tif: int
    price: int
    quantity: int
    stop_price: int = 0
    display_quantity: int = 0


class Rejected(msgspec.Struct, tag=2, array_like=True, gc=False):
    """``order_id`` is the target of a rejected cancel/replace (0 for a new order)."""

    account: int
    client_order_id: str
    symbol: str
    order_id: int
    reason: int
    text: str


class Trade(msgspec.Struct, tag=3, array_like=True, gc=False):
    """One execution. ``maker_leaves``/``taker_leaves`` are the open quantities after it
    (for an iceberg, the whole open quantity, hidden reserve included)."""

    trade_id: int
    symbol: str
    price: int
    quantity: int
    aggressor_side: int
    maker_order_id: int
    maker_account: int
    maker_leaves: int
    taker_order_id: int
    taker_account: int
    taker_leaves: int


class Cancelled(msgspec.Struct, tag=4, array_like=True, gc=False):
    """``quantity`` is the open quantity that was cancelled (hidden reserve included)."""

    order_id: int
    account: int
    symbol: str
    side: int
    price: int
    quantity: int
    reason: int


class Replaced(msgspec.Struct, tag=5, array_like=True, gc=False):
    """``quantity`` is the new total, ``leaves`` the new open quantity (hidden reserve
    included); ``stop_price`` is the armed stop's (0: not a stop), ``display_quantity`` the
    iceberg's (0: all visible)."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    kept_priority: bool
    stop_price: int = 0
    display_quantity: int = 0


class Expired(msgspec.Struct, tag=6, array_like=True, gc=False):
    order_id: int
    account: int
    symbol: str
    side: int
    price: int
    quantity: int


class LevelChanged(msgspec.Struct, tag=7, array_like=True, gc=False):
    """Depth delta: the level's new total open quantity and order count (both 0: removed)."""

    symbol: str
    side: int
    price: int
    quantity: int
    order_count: int


class StatusChanged(msgspec.Struct, tag=8, array_like=True, gc=False):
    symbol: str
    halted: bool


class Triggered(msgspec.Struct, tag=20, array_like=True, gc=False):
    """An armed stop was triggered: the last trade price touched ``stop_price``. It enters
    the book now, as ``order_type`` (``MARKET`` for a stop, ``LIMIT`` for a stop-limit) at
    ``price`` (0 for market) with its open ``quantity``, and takes time priority from this
    moment; its trades, cancels and level changes follow."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    order_type: int
    price: int
    stop_price: int
    quantity: int


class MassCancelled(msgspec.Struct, tag=30, array_like=True, gc=False):
    """The last event of a ``MassCancel`` or ``CancelOrders``: the filter it applied
    (``symbol`` "" = all, ``side`` 0 = both; always ""/0 for ``CancelOrders``), the cancel
    ``reason`` and ``count``, the number of ``Cancelled`` events before it. It is the
    command's answer for the session layer; it yields no execution report."""

    account: int
    symbol: str
    side: int
    reason: int
    count: int


class AccountStatusChanged(msgspec.Struct, tag=31, array_like=True, gc=False):
    """The last event of a ``SetAccountStatus``: the account's new state and how many of its
    orders were cancelled (``Cancelled`` events, reason ``KILL_SWITCH``, before it)."""

    account: int
    enabled: bool
    cancelled: int


Event = (Accepted | Rejected | Trade | Cancelled | Replaced | Expired | LevelChanged
         | StatusChanged | Triggered | MassCancelled | AccountStatusChanged)
"""The tagged union of every engine output."""

EVENT_TYPES: tuple[type[Event], ...] = (
    Accepted, Rejected, Trade, Cancelled, Replaced, Expired, LevelChanged, StatusChanged,
    Triggered, MassCancelled, AccountStatusChanged,
)
