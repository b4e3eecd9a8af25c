"""tickline.matching: instruments, orders, commands, events, order books and the matching
engine. Pure Python: no I/O, no clock, no randomness; imports nothing else from tickline."""

from tickline.matching.book import BookSide, Level, Order, OrderBook
from tickline.matching.commands import (
    COMMAND_TYPES,
    Cancel,
    CancelOrders,
    Command,
    MassCancel,
    NewOrder,
    Replace,
    SetAccountStatus,
    SetTradingStatus,
    TimeTick,
)
from tickline.matching.engine import EngineConfig, EngineSnapshot, MatchingEngine
from tickline.matching.engine_types import OrderRecord, RiskLimits
from tickline.matching.events import (
    EVENT_TYPES,
    Accepted,
    AccountStatusChanged,
    Cancelled,
    Event,
    Expired,
    LevelChanged,
    MassCancelled,
    Rejected,
    Replaced,
    StatusChanged,
    Trade,
    Triggered,
)
from tickline.matching.instruments import Instrument, InstrumentError
from tickline.matching.stops import StopBook
from tickline.matching.types import (
    BUY,
    SELL,
    CancelReason,
    OrderType,
    RejectReason,
    Side,
    STPMode,
    TimeInForce,
    reject_reason_name,
)

__all__ = [
    "BUY", "COMMAND_TYPES", "EVENT_TYPES", "SELL", "Accepted", "AccountStatusChanged",
    "BookSide", "Cancel", "CancelOrders", "CancelReason", "Cancelled", "Command",
    "EngineConfig", "EngineSnapshot", "Event", "Expired", "Instrument", "InstrumentError",
    "Level", "LevelChanged", "MassCancel", "MassCancelled", "MatchingEngine", "NewOrder",
    "Order", "OrderBook", "OrderRecord", "OrderType", "RejectReason", "Rejected", "Replace",
    "Replaced", "RiskLimits", "STPMode", "SetAccountStatus", "SetTradingStatus", "Side",
    "StatusChanged", "StopBook", "TimeInForce", "TimeTick", "Trade", "Triggered",
    "reject_reason_name",
]
