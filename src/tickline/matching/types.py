"""Stable codes shared by commands, events and the wire: sides, order types, time in force,
self-trade prevention modes, reject reasons and cancel reasons.

Every code is an ``IntEnum`` whose integer value is part of the journal and wire format:
never renumber one, only add. Structs store the plain ``int`` (fast to compare and to
encode); the enums give the codes names at the edges.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    """``STOP`` and ``STOP_LIMIT`` rest outside the book until the last trade price touches
    their stop price, then enter as ``MARKET`` and ``LIMIT`` orders (see
    :mod:`tickline.matching.stops`)."""

    LIMIT = 1
    MARKET = 2
    STOP = 3
    STOP_LIMIT = 4


class TimeInForce(IntEnum):
    """How long an order may live.

    GTC rests until filled or cancelled; IOC trades what it can now and cancels the rest;
    FOK trades its whole quantity now or nothing; GTD rests until ``expire_time`` (engine time).
    """

    GTC = 1
    IOC = 2
    FOK = 3
    GTD = 4


class STPMode(IntEnum):
    """Self-trade prevention: what happens when an order would trade with its own account.

    ``CANCEL_NEWEST`` (the default) cancels the incoming order's remainder; ``CANCEL_OLDEST``
    cancels the resting order and keeps matching; ``CANCEL_BOTH`` cancels both; ``OFF``
    lets the trade happen. ``ACCOUNT_DEFAULT`` on an order means "use the account's mode".
    """

    ACCOUNT_DEFAULT = 0
    CANCEL_NEWEST = 1
    CANCEL_OLDEST = 2
    CANCEL_BOTH = 3
    OFF = 4


class RejectReason(IntEnum):
    """Why a command was rejected. A rejected command changes nothing.

    Grouped by subsystem: 1xx instrument, 2xx order shape (250-269: account status and
    pre-trade risk limits, :mod:`tickline.matching.risk`), 3xx order lookup, 4xx session and
    gateway (used outside the engine). A retired code's number stays unused, never reissued.
    """

    UNKNOWN_SYMBOL = 101
    INSTRUMENT_HALTED = 102
    INVALID_SIDE = 201
    INVALID_ORDER_TYPE = 202
    INVALID_TIME_IN_FORCE = 203
    NON_POSITIVE_QUANTITY = 204
    OFF_LOT_QUANTITY = 205
    QUANTITY_TOO_LARGE = 206
    NON_POSITIVE_PRICE = 207
    OFF_TICK_PRICE = 208
    PRICE_OUT_OF_BAND = 209
    EXPIRE_TIME_IN_PAST = 210
    POST_ONLY_WOULD_TAKE = 211
    MARKET_ORDER_NOT_ALLOWED = 212
    REPLACE_QUANTITY_TOO_LOW = 213
    INVALID_STP_MODE = 214
    # 230-249: stop and iceberg orders (230-239 stop price, 240-249 display quantity)
    NON_POSITIVE_STOP_PRICE = 230
    OFF_TICK_STOP_PRICE = 231
    STOP_PRICE_OUT_OF_BAND = 232
    STOP_PRICE_NOT_ALLOWED = 233
    """A stop price on an order (or replace of an order) that is not an armed stop."""
    INVALID_STOP_ORDER = 234
    """A post-only stop, or a limit price on a replace of a stop-market order."""
    NEGATIVE_DISPLAY_QUANTITY = 240
    OFF_LOT_DISPLAY_QUANTITY = 241
    DISPLAY_QUANTITY_TOO_LARGE = 242
    """The display quantity exceeds the order's (new) total quantity."""
    DISPLAY_QUANTITY_NOT_ALLOWED = 243
    """A display quantity on a market, IOC, FOK or stop order (none of them rests visibly)."""
    ACCOUNT_DISABLED = 250
    """The account's kill switch is on (``SetAccountStatus(enabled=False)``)."""
    RISK_MAX_QUANTITY = 251
    RISK_MAX_NOTIONAL = 252
    RISK_MAX_OPEN_ORDERS = 253
    RISK_MAX_POSITION = 254
    INVALID_CANCEL_REASON = 255
    """A ``CancelOrders`` command named a reason it may not use."""
    UNKNOWN_ORDER = 301
    """Also the answer for another account's live order: the caller learns nothing of it."""
    # 302 retired (was NOT_ORDER_OWNER: it told the caller a foreign order id was live)
    DUPLICATE_CLIENT_ORDER_ID = 303
    NOT_AUTHENTICATED = 401
    RATE_LIMITED = 402
    # 403, 404 retired (were MALFORMED_MESSAGE, MESSAGE_TOO_LARGE: frame-level problems are
    # answered with the wire protocol's Error codes, never with an order reject)
    THROTTLED = 405
    CLIENT_ORDER_ID_TOO_LONG = 406
    """A gateway's ``limits.max_client_order_id_bytes`` was exceeded."""
    READ_ONLY_SESSION = 407
    """An order request on a drop-copy session (it only receives reports)."""
    RESUME_UNAVAILABLE = 408
    """A logon's ``resume_from`` names reports that do not exist (beyond the account's last)
    or can no longer be produced."""
    NOT_ADMIN = 409
    """An action reserved for accounts marked ``admin`` (e.g. a drop copy of all accounts)."""
    STALE_ORDER = 410
    """A new order or replace waited in the exchange's inbound ring longer than
    ``[deadlines] max_queue_ms`` (a firm deadline): rejected unsequenced, never journaled."""
    SHARD_UNAVAILABLE = 411
    """``serve --shards``: the shard process owning the symbol is down or restarting; the
    command was not sequenced (nothing changed), retry later."""
    CLUSTER_UNAVAILABLE = 412
    """Cluster mode: NATS is unreachable or the command's shard has no engine leader;
    nothing was logged (``tickline.cluster``)."""
    CROSS_SHARD_UNSUPPORTED = 413
    """Cluster mode with several shards: the command spans shards (an account kill switch or
    enable, a mass cancel of every symbol), which this version cannot apply atomically;
    refused, nothing was logged. Permanent for this configuration: do not retry (cancel per
    symbol instead; with ``cluster_shards = 1`` every command is accepted)."""
    # 501 retired (was OUT_OF_SEQUENCE: no gateway sequences client messages)


_REJECT_NAMES: Final[dict[int, str]] = {int(r): r.name for r in RejectReason}


def reject_reason_name(code: int) -> str:
    """The :class:`RejectReason` name of ``code``, or ``str(code)`` for a code this version
    does not know (a newer peer's): for metrics labels, logs and JSON at the edges."""
    return _REJECT_NAMES.get(code) or str(code)


class CancelReason(IntEnum):
    """Why an order (or its remainder) left the book without trading."""

    USER = 1
    IOC_REMAINDER = 2
    FOK_UNFILLABLE = 3
    SELF_TRADE = 4
    MARKET_REMAINDER = 5
    PRICE_PROTECTION = 6
    # 7 retired (was REPLACED_TO_ZERO: a replace to at most the filled quantity is rejected
    # with REPLACE_QUANTITY_TOO_LOW, never turned into a cancel)
    STOP_TRIGGER_LIMIT = 20
    """A due stop beyond ``EngineConfig.max_stop_triggers`` triggers in one command: it is
    cancelled instead of triggered (see :mod:`tickline.matching.stops`)."""
    # 30-39: cancels of many orders at once, on behalf of an account (matching/risk.py)
    MASS_CANCEL = 30
    """A ``MassCancel`` command."""
    CANCEL_ON_DISCONNECT = 31
    """A ``CancelOrders`` command sent by a session layer for a dropped session."""
    KILL_SWITCH = 32
    """``SetAccountStatus(enabled=False)`` cancelled the account's orders."""


# Plain-int aliases for hot paths (an IntEnum member lookup costs more than a global int).
BUY: Final = 1
SELL: Final = 2
LIMIT: Final = 1
MARKET: Final = 2
STOP: Final = 3
STOP_LIMIT: Final = 4
GTC: Final = 1
IOC: Final = 2
FOK: Final = 3
GTD: Final = 4
STP_ACCOUNT_DEFAULT: Final = 0
STP_CANCEL_NEWEST: Final = 1
STP_CANCEL_OLDEST: Final = 2
STP_CANCEL_BOTH: Final = 3
STP_OFF: Final = 4
