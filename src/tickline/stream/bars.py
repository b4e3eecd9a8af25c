"""OHLCV bars over aligned windows of engine time, for the market-data publisher.

A window of width ``w`` is ``[k*w, (k+1)*w)`` of engine ``ts`` (never the wall clock, so a
replay produces the same bars). A bar opens with the first trade in its window and closes
when a later command's ``ts`` reaches the window's end; a window without trades publishes
nothing. :class:`BarClock` holds every open bar and the earliest end among them, so the
publisher's per-command check is one comparison (``ts >= clock.next_close``).

Single writer: owned by one :class:`~tickline.stream.publisher.MarketDataPublisher`.
"""

from __future__ import annotations

from collections.abc import Callable

from tickline.stream.messages import Bar

__all__ = ["BarClock", "OpenBar", "window_label"]

_NEVER = 1 << 62
"""A ``next_close`` beyond any engine time: no bar is open."""


def window_label(width_ns: int) -> str:
    """A topic token for a window width: ``1s``, ``250ms``, ``5m``, ``1h``, ``10us``...
    Raises :class:`ValueError` unless ``width_ns`` is positive."""
    if width_ns <= 0:
        raise ValueError(f"bar window must be a positive number of ns, got {width_ns}")
    for unit, size in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
                       ("ms", 1_000_000), ("us", 1_000)):
        if width_ns % size == 0:
            return f"{width_ns // size}{unit}"
    return f"{width_ns}ns"


class OpenBar:
    """One symbol's bar for one window width: the running OHLCV of the current window
    (``count == 0``: no trade yet, nothing open) and the topic's sequence counter."""

    __slots__ = ("close", "count", "end", "high", "label", "low", "notional", "open", "seq",
                 "start", "symbol", "topic", "volume", "width")

    def __init__(self, symbol: str, width: int) -> None:
        self.symbol = symbol
        self.width = width
        self.label = window_label(width)
        self.topic = f"bars.{symbol}.{self.label}"
        self.seq = 0
        self.count = 0
        self.start = self.end = 0
        self.open = self.high = self.low = self.close = 0
        self.volume = self.notional = 0


class BarClock:
    """Every open bar of a publisher, when the next one closes, and the bars closed during
    the current publish call (by topic, in closing order) until :meth:`take` collects them.
    """

    __slots__ = ("next_close", "open_bars", "out")

    def __init__(self) -> None:
        self.open_bars: list[OpenBar] = []
        self.next_close = _NEVER
        self.out: dict[str, list[Bar]] = {}

    def trade(self, bars: list[OpenBar], ts: int, price: int, quantity: int) -> None:
        """Add one trade at engine time ``ts`` to each of a symbol's ``bars`` (opening the
        window that holds ``ts`` where none is open). The caller has closed what ``ts``
        ends first (``close(ts)`` whenever ``ts >= next_close``), so an open bar's window
        holds ``ts``. O(len(bars))."""
        for bar in bars:
            if bar.count == 0:
                bar.start = ts - ts % bar.width
                bar.end = bar.start + bar.width
                bar.open = bar.high = bar.low = price
                self.open_bars.append(bar)
                if bar.end < self.next_close:
                    self.next_close = bar.end
            elif price > bar.high:
                bar.high = price
            elif price < bar.low:
                bar.low = price
            bar.close = price
            bar.count += 1
            bar.volume += quantity
            bar.notional += price * quantity

    def close(self, ts: int, has_subscribers: Callable[[str], bool]) -> None:
        """Close every open bar whose window ended at or before ``ts``. A closed bar is
        built (and its topic's ``seq`` advanced) only if ``has_subscribers(topic)``; it
        waits in ``out`` for :meth:`take`. O(open bars)."""
        still_open: list[OpenBar] = []
        next_close = _NEVER
        out = self.out
        for bar in self.open_bars:
            if bar.end > ts:
                still_open.append(bar)
                if bar.end < next_close:
                    next_close = bar.end
                continue
            if has_subscribers(bar.topic):
                bar.seq += 1
                out.setdefault(bar.topic, []).append(Bar(
                    bar.seq, bar.symbol, bar.label, bar.start, bar.end, bar.open, bar.high,
                    bar.low, bar.close, bar.volume, bar.notional, bar.count,
                ))
            bar.count = bar.volume = bar.notional = 0
        self.open_bars = still_open
        self.next_close = next_close

    def take(self) -> dict[str, list[Bar]]:
        """The bars closed since the last call, by topic; empties ``out``. O(1)."""
        out = self.out
        if out:
            self.out = {}
        return out
