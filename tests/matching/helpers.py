"""Shared helpers for the matching-engine tests: a harness that stamps sequence numbers and
timestamps, bounded hypothesis settings, and event-level bookkeeping used by several suites."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, settings

from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    Cancel,
    Cancelled,
    Command,
    EngineConfig,
    Event,
    Expired,
    Instrument,
    LevelChanged,
    MatchingEngine,
    NewOrder,
    Rejected,
    Replace,
    Replaced,
    SetTradingStatus,
    TimeTick,
    Trade,
)

# Hypothesis budget: small by default so the suite stays well under a minute on 2 cores;
# TICKLINE_MATCHING_EXAMPLES=2000 for a long soak.
EXAMPLES = int(os.environ.get("TICKLINE_MATCHING_EXAMPLES", "100"))
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SYM = "ABC"


class Harness:
    """An engine plus a sequencer stand-in: every command gets the next seq and a timestamp
    (``ts`` advances by 1 unless given), and ``engine.check()`` runs after every command."""

    def __init__(
        self,
        instruments: Iterable[Instrument] | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.engine = MatchingEngine(
            list(instruments) if instruments is not None else [Instrument(symbol=SYM)], config
        )
        self.seq = 0
        self.ts = 1_000

    def send(self, cmd: Command) -> list[Event]:
        events = self.engine.process(cmd)
        self.engine.check()
        return events

    def _stamp(self, ts: int | None) -> None:
        self.seq += 1
        self.ts = self.ts + 1 if ts is None else ts

    def new(self, account: int, side: int, quantity: int, price: int = 0, *,
            symbol: str = SYM, ts: int | None = None, **kw: Any) -> list[Event]:
        self._stamp(ts)
        return self.send(NewOrder(seq=self.seq, ts=self.ts, account=account, symbol=symbol,
                                  side=side, quantity=quantity, price=price, **kw))

    def buy(self, account: int, quantity: int, price: int = 0, **kw: Any) -> list[Event]:
        return self.new(account, BUY, quantity, price, **kw)

    def sell(self, account: int, quantity: int, price: int = 0, **kw: Any) -> list[Event]:
        return self.new(account, SELL, quantity, price, **kw)

    def cancel(self, account: int, order_id: int = 0, *, symbol: str = SYM,
               ts: int | None = None, **kw: Any) -> list[Event]:
        self._stamp(ts)
        return self.send(Cancel(seq=self.seq, ts=self.ts, account=account, symbol=symbol,
                                order_id=order_id, **kw))

    def replace(self, account: int, order_id: int = 0, *, symbol: str = SYM,
                ts: int | None = None, **kw: Any) -> list[Event]:
        self._stamp(ts)
        return self.send(Replace(seq=self.seq, ts=self.ts, account=account, symbol=symbol,
                                 order_id=order_id, **kw))

    def status(self, halted: bool, *, symbol: str = SYM, ts: int | None = None) -> list[Event]:
        self._stamp(ts)
        return self.send(SetTradingStatus(seq=self.seq, ts=self.ts, symbol=symbol, halted=halted))

    def tick(self, ts: int) -> list[Event]:
        self._stamp(ts)
        return self.send(TimeTick(seq=self.seq, ts=self.ts))

    # -- queries used by assertions ----------------------------------------------------

    def book_state(self, symbol: str = SYM) -> list[tuple[int, ...]]:
        """Every resting order of ``symbol`` in priority order, as plain tuples."""
        return [
            (o.order_id, o.account, o.side, o.price, o.quantity, o.leaves, o.filled, o.priority)
            for o in self.engine.book(symbol).orders()
        ]

    def books_digest(self) -> list[str]:
        return [self.engine.books[s].digest() for s in sorted(self.engine.books)]

    def ids(self, symbol: str = SYM) -> list[int]:
        return [o.order_id for o in self.engine.book(symbol).orders()]


def of_type(events: Iterable[Event], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


def accepted_id(events: list[Event]) -> int:
    acc = of_type(events, Accepted)
    assert len(acc) == 1, events
    return int(acc[0].order_id)


def non_depth(events: Iterable[Event]) -> list[Event]:
    return [e for e in events if type(e) is not LevelChanged]


class OrderTracker:
    """Follows every order from the events alone and checks conservation:
    ``filled + open + cancelled == quantity`` (quantity as last set by accept/replace)."""

    def __init__(self) -> None:
        self.quantity: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.open: dict[int, int] = {}
        self.cancelled: dict[int, int] = {}
        self.last_trade_id = 0

    def apply(self, events: Iterable[Event]) -> None:
        for e in events:
            if isinstance(e, Accepted):
                assert e.order_id not in self.quantity, f"order id {e.order_id} reused"
                assert e.order_id == max(self.quantity, default=0) + 1, "order ids not dense"
                self.quantity[e.order_id] = e.quantity
                self.filled[e.order_id] = 0
                self.open[e.order_id] = e.quantity
                self.cancelled[e.order_id] = 0
            elif isinstance(e, Trade):
                assert e.trade_id == self.last_trade_id + 1, "trade ids not monotonic"
                self.last_trade_id = e.trade_id
                assert e.quantity > 0
                for oid, leaves in ((e.maker_order_id, e.maker_leaves),
                                    (e.taker_order_id, e.taker_leaves)):
                    self.filled[oid] += e.quantity
                    self.open[oid] -= e.quantity
                    assert self.open[oid] == leaves, f"order {oid}: leaves {leaves} != tracked"
                    assert leaves >= 0
            elif isinstance(e, (Cancelled, Expired)):
                oid = e.order_id
                assert e.quantity == self.open[oid], f"order {oid} cancelled {e.quantity}"
                assert e.quantity > 0, f"order {oid}: empty cancel {e}"
                self.cancelled[oid] += e.quantity
                self.open[oid] = 0
            elif isinstance(e, Replaced):
                oid = e.order_id
                assert self.open[oid] > 0, f"replaced finished order {oid}"
                assert e.leaves == e.quantity - self.filled[oid]
                assert e.leaves > 0
                self.quantity[oid] = e.quantity
                self.open[oid] = e.leaves
        for oid, qty in self.quantity.items():
            assert self.filled[oid] + self.open[oid] + self.cancelled[oid] == qty, oid

    def check_against(self, engine: MatchingEngine) -> None:
        live = {oid: q for oid, q in self.open.items() if q > 0}
        assert set(live) == set(engine.orders), (sorted(live), sorted(engine.orders))
        for oid, q in live.items():
            order = engine.orders[oid]
            assert order.leaves + order.hidden == q
            assert order.filled == self.filled[oid]
            assert order.quantity == self.quantity[oid]


__all__ = [
    "BOUNDED", "BUY", "SELL", "SYM", "Accepted", "Cancelled", "Expired", "Harness",
    "LevelChanged", "OrderTracker", "Rejected", "Replaced", "Trade", "accepted_id",
    "non_depth", "of_type",
]
