"""Market data: turn the matching engine's events into sequenced public and private streams.

The exchange loop calls :meth:`MarketDataPublisher.publish` after each command (or
:meth:`MarketDataPublisher.publish_batch` after a batch of them) with the command's ``seq``,
``ts`` and events. The publisher keeps a mirror of every book (levels and resting orders,
rebuilt from the events alone) and publishes, per symbol:

=====================  ==================================================================
topic                  messages
=====================  ==================================================================
``trades.SYM``         :class:`TradeTick` per execution
``bbo.SYM``            :class:`Bbo` when the best bid/offer (price or size) changes
``depth.SYM``          :class:`DepthDelta` per level change (side, price, new total, count)
``l3.SYM``             :class:`OrderAdded`, :class:`OrderModified`, :class:`OrderExecuted`,
                       :class:`OrderDeleted`: the resting orders, one by one
``bars.SYM.<w>``       :class:`Bar`: OHLCV, notional and exact VWAP per window ``w`` (``1s``...)
``status.SYM``         :class:`StatusUpdate` on halt/resume, :class:`AccountStatusUpdate` on
                       an account's kill switch / re-enable (on every symbol's topic)
=====================  ==================================================================

**Sequence numbers.** Every message carries ``seq``, counted per topic from 1 without gaps.
Messages nobody is subscribed to are not built (the topic's sequence then stays put), which
is consistent because snapshots are taken from the same mirror: a late joiner calls
:meth:`MarketDataPublisher.subscribe_depth`, gets a :class:`DepthSnapshot` tagged with the
topic sequence it reflects, and the deltas on its subscription continue at ``seq + 1``. A
subscriber that sees a gap (its queue dropped or conflated) resyncs from
:meth:`MarketDataPublisher.depth_snapshot`; :class:`DepthBook` does the bookkeeping.

**Engine time.** Bars are aligned windows ``[k*w, (k+1)*w)`` of engine time; a window's bar
is published when a later command's ``ts`` reaches its end (a ``TimeTick`` command or an
empty ``publish(seq, ts, [])`` closes it too). Windows without trades publish nothing.

**Privacy.** Public messages carry no accounts. Execution reports are not market data:
:mod:`tickline.stream.reports` builds them and :mod:`tickline.stream.routing` delivers them
to their accounts' sessions only.

**Ordering.** Within a topic, messages are in engine order. A publish call delivers each
topic's messages as one chunk, so a subscriber to several topics sees them grouped by topic
per call; use ``ts`` and the per-topic ``seq`` to interleave if needed.

**Where things live.** This module is the overview and re-exports every public name; the
code is split by concern:

* :mod:`tickline.stream.messages` -- the message types and :data:`MarketDataMessage`;
* :mod:`tickline.stream.publisher` -- :class:`MarketDataPublisher` (the mirror and one
  handler per event kind) and :class:`PublisherStatistics`;
* :mod:`tickline.stream.bars` -- bar windows (:func:`window_label`) and their closing;
* :mod:`tickline.stream.consumer` -- :class:`DepthBook` and :class:`SequenceTracker`, for
  subscribers.
"""

from __future__ import annotations

from tickline.stream.bars import window_label
from tickline.stream.consumer import DepthBook, SequenceTracker
from tickline.stream.messages import (
    AccountStatusUpdate,
    Bar,
    Bbo,
    DepthDelta,
    DepthSnapshot,
    L3Reason,
    L3Snapshot,
    Level3,
    MarketDataMessage,
    OrderAdded,
    OrderDeleted,
    OrderExecuted,
    OrderModified,
    StatusUpdate,
    TradeTick,
)
from tickline.stream.publisher import MarketDataPublisher, PublisherStatistics
from tickline.stream.reports import ExecKind, ExecReport  # re-exported (moved there)

__all__ = [
    "AccountStatusUpdate",
    "Bar",
    "Bbo",
    "DepthBook",
    "DepthDelta",
    "DepthSnapshot",
    "ExecKind",
    "ExecReport",
    "L3Reason",
    "L3Snapshot",
    "Level3",
    "MarketDataMessage",
    "MarketDataPublisher",
    "OrderAdded",
    "OrderDeleted",
    "OrderExecuted",
    "OrderModified",
    "PublisherStatistics",
    "SequenceTracker",
    "StatusUpdate",
    "TradeTick",
    "window_label",
]
