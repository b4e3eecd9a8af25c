"""The engine's configuration and its snapshot: the two structs that define an engine's
identity (two engines replay identically only with the same :class:`EngineConfig`) and its
whole state on disk (:class:`EngineSnapshot`, written by the journal's snapshots). Kept
apart from :mod:`tickline.matching.engine` (which re-exports both) only for size.
"""

from __future__ import annotations

import msgspec

from tickline.matching.book import Order
from tickline.matching.risk import RiskLimits
from tickline.matching.types import STP_CANCEL_NEWEST

__all__ = ["EngineConfig", "EngineSnapshot"]


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
    orders: list[Order]
    recent_client_ids: list[tuple[int, str]]
    stops: list[Order] = msgspec.field(default_factory=list)
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
