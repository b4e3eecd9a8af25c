"""MarketDataRequest (V) -> MarketDataSnapshotFullRefresh (W), MarketDataIncrementalRefresh
(X), MarketDataRequestReject (Y), for the FIX acceptor.

Bids (269=0) and offers (269=1) by price level, ``MarketDepth`` (264) levels per side (0 =
the best 100). A snapshot request (263=0) gets one W per symbol; a subscription (263=1) gets
that W, then, every ``interval`` seconds in which the levels changed, one X per symbol with
the changed levels (279=0 new, 1 change, 2 delete) — or a new W when MDUpdateType (265) is 0.
Updates are conflated to that interval (a FIX client gets the book's state, not every
intermediate level change). 263=2 ends the subscription named by MDReqID (262).

Rejects (281): 0 unknown symbol, 1 duplicate MDReqID, 4 unsupported SubscriptionRequestType,
5 unsupported MarketDepth, 8 unsupported MDEntryType (neither 0 nor 1 asked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tickline.gateway.fix.app import fmt_units
from tickline.gateway.fix.codec import FixMessage

if TYPE_CHECKING:
    from tickline.gateway.fix.gateway import FixGateway
    from tickline.gateway.fix.session import FixSession

__all__ = ["FixMarketData"]

FULL_DEPTH = 100


class _Sub:
    __slots__ = ("depth", "full", "last", "req_id", "sides", "symbols")

    def __init__(self, req_id: str, symbols: list[str], sides: list[int], depth: int,
                 full: bool) -> None:
        self.req_id = req_id
        self.symbols = symbols
        self.sides = sides
        self.depth = depth
        self.full = full
        self.last: dict[str, tuple[dict[int, int], dict[int, int]]] = {}


class FixMarketData:
    """The market data subscriptions of every FIX session of one gateway."""

    def __init__(self, gateway: FixGateway) -> None:
        self.gw = gateway
        self.subs: dict[FixSession, dict[str, _Sub]] = {}

    def request(self, session: FixSession, msg: FixMessage) -> None:
        values = msg.values
        req_id = values.get(262, "")
        kind = values.get(263, "")
        mine = self.subs.get(session, {})
        if kind == "2":
            mine.pop(req_id, None)
            return
        if kind not in ("0", "1"):
            self._reject(session, req_id, 4, "SubscriptionRequestType must be 0, 1 or 2")
            return
        if req_id in mine:
            self._reject(session, req_id, 1, f"MDReqID {req_id!r} is already subscribed")
            return
        depth_text = values.get(264, "0")
        depth = int(depth_text) if depth_text.isdecimal() else -1
        if depth < 0 or depth > FULL_DEPTH:
            self._reject(session, req_id, 5, f"MarketDepth must be 0..{FULL_DEPTH}")
            return
        symbols = [v for t, v in msg.fields if t == 55]
        sides = sorted({int(v) for t, v in msg.fields if t == 269 and v in ("0", "1")})
        if not sides:
            self._reject(session, req_id, 8, "only bids (0) and offers (1) are published")
            return
        for s in symbols:
            if s not in self.gw.instruments:
                self._reject(session, req_id, 0, f"unknown symbol {s!r}")
                return
        if not symbols:
            self._reject(session, req_id, 0, "no symbol (146/55) requested")
            return
        sub = _Sub(req_id, symbols, sides, depth or FULL_DEPTH, values.get(265) == "0")
        for symbol in symbols:
            self._snapshot(session, sub, symbol, self._levels(sub, symbol))
        if kind == "1":
            self.subs.setdefault(session, {})[req_id] = sub

    def drop(self, session: FixSession) -> None:
        self.subs.pop(session, None)

    def publish(self) -> None:
        """Send what changed since the last time (the gateway's timer)."""
        for session, mine in list(self.subs.items()):
            if session.closed:
                self.subs.pop(session, None)
                continue
            for sub in mine.values():
                for symbol in sub.symbols:
                    now = self._levels(sub, symbol)
                    if now != sub.last.get(symbol):
                        if sub.full:
                            self._snapshot(session, sub, symbol, now)
                        else:
                            self._incremental(session, sub, symbol, now)

    def _levels(self, sub: _Sub, symbol: str) -> tuple[dict[int, int], dict[int, int]]:
        # the publisher's depth (what depth.SYM publishes), in every exchange mode
        snap = self.gw.exchange.publisher.depth_snapshot(symbol)
        n = sub.depth
        bids = {p: q for p, q, _c in snap.bids[:n]} if 0 in sub.sides else {}
        asks = {p: q for p, q, _c in snap.asks[:n]} if 1 in sub.sides else {}
        return bids, asks

    def _snapshot(self, session: FixSession, sub: _Sub, symbol: str,
                  levels: tuple[dict[int, int], dict[int, int]]) -> None:
        inst = self.gw.instruments[symbol]
        entries = bytearray()
        n = 0
        for side, book in enumerate(levels):
            for price, qty in book.items():
                entries += b"269=%d\x01270=%s\x01271=%s\x01" % (
                    side, fmt_units(price, inst.price_decimals).encode(),
                    fmt_units(qty, inst.qty_decimals).encode())
                n += 1
        sub.last[symbol] = levels
        session.send_app("W", b"262=%s\x0155=%s\x01268=%d\x01%s" % (
            sub.req_id.encode("latin-1"), symbol.encode(), n, bytes(entries)))

    def _incremental(self, session: FixSession, sub: _Sub, symbol: str,
                     levels: tuple[dict[int, int], dict[int, int]]) -> None:
        inst = self.gw.instruments[symbol]
        old = sub.last.get(symbol, ({}, {}))
        entries = bytearray()
        n = 0
        sym = symbol.encode()
        for side in (0, 1):
            before, after = old[side], levels[side]
            for price, qty in after.items():
                was = before.get(price)
                if was == qty:
                    continue
                entries += b"279=%d\x01269=%d\x0155=%s\x01270=%s\x01271=%s\x01" % (
                    0 if was is None else 1, side, sym,
                    fmt_units(price, inst.price_decimals).encode(),
                    fmt_units(qty, inst.qty_decimals).encode())
                n += 1
            for price in before:
                if price not in after:
                    entries += b"279=2\x01269=%d\x0155=%s\x01270=%s\x01" % (
                        side, sym, fmt_units(price, inst.price_decimals).encode())
                    n += 1
        sub.last[symbol] = levels
        if n:
            session.send_app("X", b"262=%s\x01268=%d\x01%s" % (sub.req_id.encode("latin-1"),
                                                               n, bytes(entries)))

    def _reject(self, session: FixSession, req_id: str, reason: int, text: str) -> None:
        self.gw.md_rejects += 1
        session.send_app("Y", b"262=%s\x01281=%d\x0158=%s\x01" % (
            (req_id or "NONE").encode("latin-1"), reason, text.encode()))
