"""The engine's configuration and its snapshot: the structs that define an engine's
identity (two engines replay identically only with the same :class:`EngineConfig`, with its
per-account :class:`RiskLimits`) and its whole state on disk (:class:`EngineSnapshot`, its
orders as :class:`OrderRecord`, written by the journal's snapshots).

Every ``msgspec.Struct`` the engine needs lives here (and in :mod:`.commands`,
:mod:`.events`, :mod:`.instruments`), never in the hot-path modules (:mod:`.book`,
:mod:`.engine`, :mod:`.replace`, :mod:`.iceberg`, :mod:`.stops`, :mod:`.risk`,
:mod:`.state`): those are meant to be compiled with mypyc, which silently drops Struct
class keywords (``gc=False``, ``frozen``, ``kw_only``, ``forbid_unknown_fields``) in the
modules it compiles. This module stays interpreted.
"""

from __future__ import annotations

import msgspec

from tickline.matching.book import Order
from tickline.matching.types import STP_CANCEL_NEWEST

__all__ = ["LIMIT_FIELDS", "EngineConfig", "EngineSnapshot", "OrderRecord", "RiskLimits"]

LIMIT_FIELDS = ("max_order_quantity", "max_order_notional", "max_open_orders", "max_position")


class RiskLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Pre-trade limits of one account (see :mod:`tickline.matching.risk`); 0 = no limit. Part of
    :class:`~tickline.matching.engine.EngineConfig`, so part of the engine's identity."""

    max_order_quantity: int = 0
    """Largest order quantity, in lots."""
    max_order_notional: int = 0
    """Largest price x quantity of one order, in price units x lots."""
    max_open_orders: int = 0
    """Most live (resting) orders at once, over all symbols."""
    max_position: int = 0
    """Largest absolute net filled position per symbol, in lots."""

    @property
    def active(self) -> bool:
        """True when at least one limit is set."""
        return bool(self.max_order_quantity or self.max_order_notional
                    or self.max_open_orders or self.max_position)

    def validate(self, who: str = "risk limits") -> RiskLimits:
        """Return self; ``ValueError`` naming the field and value if one is negative."""
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{who}: {name} must be an integer >= 0 (0 = no limit), "
                                 f"got {value!r}")
        return self


class OrderRecord(msgspec.Struct, gc=False):
    """An order as a snapshot stores it: the fields of :class:`~tickline.matching.book.Order`
    (the engine's plain, compilable class), in the same order, with the same defaults, so a
    snapshot encodes to exactly the bytes it did when ``Order`` itself was a Struct (old
    snapshots load unchanged). Used only at the snapshot edge: :meth:`from_order` and
    :meth:`to_order` copy, so a snapshot never shares state with a live engine."""

    order_id: int
    account: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    filled: int
    tif: int
    expire_time: int
    post_only: bool
    stp: int
    priority: int
    display: int = 0
    hidden: int = 0
    stop_price: int = 0
    special: bool = False

    @classmethod
    def from_order(cls, order: Order) -> OrderRecord:
        """A copy of a live order."""
        return cls(*order.astuple())

    def to_order(self) -> Order:
        """A new live order with these fields."""
        return Order(*msgspec.structs.astuple(self))


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
    max_stop_triggers: int = 1_000
    """At most this many stops trigger in one command (cascades included); the stops still
    due after that are cancelled ``STOP_TRIGGER_LIMIT`` (see :mod:`tickline.matching.stops`)."""


class EngineSnapshot(msgspec.Struct, kw_only=True):
    """Everything needed to rebuild an engine exactly (see :meth:`MatchingEngine.snapshot`)."""

    last_seq: int
    now: int
    next_order_id: int
    next_trade_id: int
    halted: list[str]
    orders: list[OrderRecord]
    recent_client_ids: list[tuple[int, str]]
    stops: list[OrderRecord] = msgspec.field(default_factory=list)
    """Armed stop orders, in arrival order."""
    last_prices: dict[str, int] = msgspec.field(default_factory=dict)
    """The last trade price of every symbol that has traded (stops trigger on it)."""
    attachments: dict[str, bytes] = msgspec.field(default_factory=dict)
    """State of components downstream of the engine that derive from its events (e.g. the
    exchange's report numbering), saved with the engine so a snapshot restores them at the
    same sequence number. Opaque to the engine."""
    positions: list[tuple[int, str, int]] = msgspec.field(default_factory=list)
    """``(account, symbol, net filled quantity)``, sorted (only when positions are tracked:
    some account has ``max_position``)."""
    disabled_accounts: list[int] = msgspec.field(default_factory=list)
    """Accounts whose kill switch is on, sorted."""
