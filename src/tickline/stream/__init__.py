"""tickline.stream: the in-process pub/sub bus and the sequenced market-data products.

* :class:`Bus` -- named topics with ``*``/``>`` wildcards; subscribers (callbacks or async
  iterators) each with a bounded queue and a slow-consumer :class:`Policy`; synchronous,
  batch-friendly publishing; :meth:`Bus.statistics`.
* :class:`MarketDataPublisher` -- engine events to trades, BBO, depth deltas, L3 order
  events, OHLCV/VWAP bars and status, every message with a per-topic sequence number;
  snapshots for late joiners and resync (overview: :mod:`tickline.stream.marketdata`;
  code: ``messages``, ``publisher``, ``bars``, ``consumer``).
* :class:`ReportBuilder` -- each command's execution reports, numbered per account
  (deterministic: re-derivable from the journal); :class:`ReportRouter` -- delivers them to
  their accounts' sessions, the one path every gateway uses.
"""

from tickline.stream.bars import window_label
from tickline.stream.bus import (
    Bus,
    BusStatistics,
    Chunk,
    Policy,
    SubscriberDisconnected,
    Subscription,
    SubscriptionClosed,
    SubscriptionStatistics,
    default_conflation_key,
    topic_matches,
)
from tickline.stream.consumer import DepthBook, SequenceTracker
from tickline.stream.messages import (
    AccountStatusUpdate,
    Bar,
    Bbo,
    DepthDelta,
    DepthSnapshot,
    L3Reason,
    L3Snapshot,
    MarketDataMessage,
    OrderAdded,
    OrderDeleted,
    OrderExecuted,
    OrderModified,
    StatusUpdate,
    TradeTick,
)
from tickline.stream.publisher import MarketDataPublisher, PublisherStatistics
from tickline.stream.reports import ExecKind, ExecReport, ReportBuilder
from tickline.stream.routing import ReportPort, ReportRouter

__all__ = [
    "AccountStatusUpdate", "Bar", "Bbo", "Bus", "BusStatistics", "Chunk", "DepthBook",
    "DepthDelta", "DepthSnapshot",
    "ExecKind", "ExecReport", "L3Reason", "L3Snapshot", "MarketDataMessage",
    "MarketDataPublisher", "OrderAdded", "OrderDeleted", "OrderExecuted", "OrderModified",
    "Policy", "PublisherStatistics", "ReportBuilder", "ReportPort", "ReportRouter",
    "SequenceTracker", "StatusUpdate",
    "SubscriberDisconnected", "Subscription", "SubscriptionClosed", "SubscriptionStatistics",
    "TradeTick", "default_conflation_key", "topic_matches", "window_label",
]
