"""Interoperability, the acceptance test of the FIX gateway: a standard FIX engine — the
QuickFIX initiator (``quickfix`` bindings, the ``fix-interop`` extra) with data-dictionary
validation on (``UseDataDictionary=Y`` and the FIX44.xml the package ships) — logs on to a real
server, places, replaces, cancels orders, asks for order status, mass-cancels, subscribes to
market data and gets it, disconnects and reconnects with sequence recovery (a ResendRequest
answered with PossDup resends), and no session-level Reject is sent by either side.

Each QuickFIX engine gets its own SenderCompID and is deleted before the next one is made
(a new initiator for the same session while an old, stopped one is alive segfaults).
"""

from __future__ import annotations

import gc
import queue
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.fix.harness import FixServer, fix_config
from tickline.gateway.fix import codec

fix = pytest.importorskip("quickfix")
fix44 = pytest.importorskip("quickfix44")

pytestmark = [pytest.mark.quickfix, pytest.mark.slow]

DICTIONARY = Path(sys.prefix) / "share" / "quickfix" / "FIX44.xml"


class Initiator(fix.Application):  # type: ignore[misc]
    """Records every message either way; counts session-level rejects both sides."""

    def __init__(self, password: str) -> None:
        super().__init__()
        self.password = password
        self.session: Any = None
        self.logged_on = False
        self.app_in: queue.Queue[codec.FixMessage] = queue.Queue()
        self.md_in: queue.Queue[codec.FixMessage] = queue.Queue()  # W and X apart
        self.rejects_sent: list[str] = []
        self.rejects_received: list[str] = []
        self.admin_in: list[str] = []

    def onCreate(self, session: Any) -> None:  # noqa: N802 - QuickFIX's names
        self.session = session

    def onLogon(self, session: Any) -> None:  # noqa: N802
        self.logged_on = True

    def onLogout(self, session: Any) -> None:  # noqa: N802
        self.logged_on = False

    def toAdmin(self, message: Any, session: Any) -> None:  # noqa: N802
        mt = message.getHeader().getField(35)
        if mt == "A":
            message.setField(fix.Password(self.password))
        if mt == "3":
            self.rejects_sent.append(message.toString())

    def fromAdmin(self, message: Any, session: Any) -> None:  # noqa: N802
        text = message.toString()
        self.admin_in.append(text)
        if message.getHeader().getField(35) == "3":
            self.rejects_received.append(text)

    def toApp(self, message: Any, session: Any) -> None:  # noqa: N802
        pass

    def fromApp(self, message: Any, session: Any) -> None:  # noqa: N802
        msg = codec.parse(message.toString().encode("latin-1"))
        (self.md_in if msg.msg_type in ("W", "X") else self.app_in).put(msg)

    def expect(self, msg_type: str, timeout: float = 10.0) -> codec.FixMessage:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {msg_type} from the acceptor")
            try:
                msg = (self.md_in if msg_type in ("W", "X") else self.app_in).get(timeout=left)
            except queue.Empty:
                continue
            if msg.msg_type == msg_type:
                return msg
            raise AssertionError(f"expected {msg_type}, got {msg!r}")

    def send(self, message: Any) -> None:
        assert fix.Session.sendToTarget(message, self.session)


def settings(tmp: Path, sender: str, port: int, *, reset: bool) -> Any:
    path = tmp / f"{sender}.cfg"
    path.write_text(f"""[DEFAULT]
ConnectionType=initiator
ReconnectInterval=1
FileStorePath={tmp / 'qf-store'}
StartTime=00:00:00
EndTime=00:00:00
UseDataDictionary=Y
DataDictionary={DICTIONARY}
ResetOnLogon={'Y' if reset else 'N'}
[SESSION]
BeginString=FIX.4.4
SenderCompID={sender}
TargetCompID=TICKLINE
SocketConnectHost=127.0.0.1
SocketConnectPort={port}
HeartBtInt=30
""")
    return fix.SessionSettings(str(path))


def start(app: Initiator, tmp: Path, sender: str, port: int, *, reset: bool) -> Any:
    cfg = settings(tmp, sender, port, reset=reset)
    initiator = fix.SocketInitiator(app, fix.FileStoreFactory(cfg), cfg,
                                    fix.ScreenLogFactory(False, False, False))
    initiator.start()
    deadline = time.monotonic() + 15
    while not app.logged_on:
        assert time.monotonic() < deadline, "QuickFIX did not log on"
        time.sleep(0.05)
    return initiator


def build(cls: Any, *fields: Any) -> Any:
    """A QuickFIX message of type ``cls`` with ``fields`` set."""
    m = cls()
    for f in fields:
        m.setField(f)
    return m


def now() -> Any:
    return fix.TransactTime()


def new_order(clid: str, side: str, qty: int, price: float | None, symbol: str = "AAPL") -> Any:
    m = build(fix44.NewOrderSingle, fix.ClOrdID(clid), fix.Side(side), now(),
                             fix.OrdType(fix.OrdType_LIMIT if price is not None
                                         else fix.OrdType_MARKET))
    m.setField(fix.Symbol(symbol))
    m.setField(fix.OrderQty(qty))
    if price is not None:
        m.setField(fix.Price(price))
        m.setField(fix.TimeInForce(fix.TimeInForce_GOOD_TILL_CANCEL))
    return m


def test_quickfix_trades_recovers_and_nobody_rejects(tmp_path: Path) -> None:
    config = fix_config(tmp_path / "journal", [("QFX1", "alice", False),
                                               ("QFX2", "bob", False)])
    with FixServer(tmp_path / "journal", config) as srv:
        alice = Initiator("alice-key")
        bob = Initiator("bob-key-3")
        engines: list[Any] = []
        try:
            run_scenario(srv, tmp_path, alice, bob, engines)
        finally:  # stopped and freed here, also on failure (a live engine freed late crashes)
            for engine in engines:
                engine.stop()
            engines.clear()
            gc.collect()


def run_scenario(srv: FixServer, tmp_path: Path, alice: Initiator, bob: Initiator,
                 engines: list[Any]) -> None:
    qa = start(alice, tmp_path, "QFX1", srv.fix_port, reset=True)
    engines.append(qa)
    qb = start(bob, tmp_path, "QFX2", srv.fix_port, reset=True)
    engines.append(qb)

    # market data subscription first: snapshot of the empty book, then updates
    md = build(fix44.MarketDataRequest, fix.MDReqID("md1"), fix.SubscriptionRequestType("1"),
                                 fix.MarketDepth(5))
    entry = fix44.MarketDataRequest.NoMDEntryTypes()
    for t in ("0", "1"):
        entry.setField(fix.MDEntryType(t))
        md.addGroup(entry)
    sym = fix44.MarketDataRequest.NoRelatedSym()
    sym.setField(fix.Symbol("AAPL"))
    md.addGroup(sym)
    alice.send(md)
    snap = alice.expect("W")
    assert snap.get(262) == "md1" and snap.get(268) == "0"

    # a resting bid, then its replace (price and quantity), then a status request
    alice.send(new_order("A1", fix.Side_BUY, 10, 100.25))
    ack = alice.expect("8")
    assert (ack.get(150), ack.get(39), ack.get(151), ack.get(44)) == ("0", "0", "10",
                                                                      "100.25")
    order_id = ack.get(37)
    update = alice.expect("X")
    assert [v for t, v in update.fields if t in (279, 269, 270, 271)] == [
        "0", "0", "100.25", "10"]
    rep = build(fix44.OrderCancelReplaceRequest, fix.OrigClOrdID("A1"), fix.ClOrdID("A2"),
                                          fix.Side(fix.Side_BUY), now(),
                                          fix.OrdType(fix.OrdType_LIMIT))
    rep.setField(fix.Symbol("AAPL"))
    rep.setField(fix.OrderQty(12))
    rep.setField(fix.Price(100.30))
    alice.send(rep)
    replaced = alice.expect("8")
    assert (replaced.get(150), replaced.get(11), replaced.get(41), replaced.get(37),
            replaced.get(44), replaced.get(151)) == ("5", "A2", "A1", order_id, "100.30",
                                                     "12")

    # bob sells 5 at market into it: both get fills, exact prices, cumulative fields
    bob.send(new_order("B1", fix.Side_SELL, 5, None))
    assert bob.expect("8").get(150) == "0"
    bob_fill = bob.expect("8")
    assert (bob_fill.get(150), bob_fill.get(39), bob_fill.get(31), bob_fill.get(32),
            bob_fill.get(14), bob_fill.get(6)) == ("F", "2", "100.30", "5", "5", "100.30")
    fill = alice.expect("8")
    assert (fill.get(150), fill.get(39), fill.get(14), fill.get(151)) == ("F", "1", "5",
                                                                          "7")
    status = build(fix44.OrderStatusRequest, fix.ClOrdID("A2"), fix.Side(fix.Side_BUY))
    status.setField(fix.Symbol("AAPL"))
    alice.send(status)
    st = alice.expect("8")
    assert (st.get(150), st.get(39), st.get(151), st.get(14)) == ("I", "1", "7", "5")

    # cancel, and a second order taken by a mass cancel
    cxl = build(fix44.OrderCancelRequest, fix.OrigClOrdID("A2"), fix.ClOrdID("A3"),
                                   fix.Side(fix.Side_BUY), now())
    cxl.setField(fix.Symbol("AAPL"))
    alice.send(cxl)
    cancelled = alice.expect("8")
    assert (cancelled.get(150), cancelled.get(39), cancelled.get(11),
            cancelled.get(41)) == ("4", "4", "A3", "A2")
    alice.send(new_order("A4", fix.Side_SELL, 3, 101.00))
    assert alice.expect("8").get(150) == "0"
    mass = build(fix44.OrderMassCancelRequest, fix.ClOrdID("M1"),
                 fix.MassCancelRequestType("7"), now())
    alice.send(mass)
    assert alice.expect("8").get(150) == "4"
    report = alice.expect("r")
    assert (report.get(531), report.get(533)) == ("7", "1")

    # disconnect; bob trades... alice's order rests while she is away: reports missed
    alice.send(new_order("A5", fix.Side_BUY, 2, 99.00))
    a5_ack = alice.expect("8")
    assert a5_ack.get(150) == "0"
    qa.stop()
    engines.remove(qa)
    del qa
    gc.collect()
    bob.send(new_order("B2", fix.Side_SELL, 2, 99.00))
    assert bob.expect("8").get(150) == "0"
    assert bob.expect("8").get(150) == "F"
    # lose the acceptor's messages from the ack of A5 on on QuickFIX's side: on reconnect
    # it must ask for them again (ResendRequest) and get PossDup resends
    seqnums = next((tmp_path / "qf-store").glob("*QFX1*.seqnums"))
    sender_seq, target_seq = (int(x) for x in seqnums.read_text().split(":"))
    assert target_seq > int(a5_ack.get(34))
    seqnums.write_text(f"{sender_seq:010d} : {int(a5_ack.get(34)):010d}")
    alice2 = Initiator("alice-key")
    qa2 = start(alice2, tmp_path, "QFX1", srv.fix_port, reset=False)
    engines.append(qa2)
    got: list[codec.FixMessage] = []

    def seen_fill() -> bool:
        return any(m.get(11) == "A5" and m.get(150) == "F" for m in got)

    def seen_resend() -> bool:  # the lost ack of A5, resent with PossDupFlag
        return any(m.get(43) == "Y" and m.get(11) == "A5" and m.get(150) == "0"
                   for m in got)

    deadline = time.monotonic() + 15
    while not (seen_fill() and seen_resend()):
        assert time.monotonic() < deadline, got
        got.append(alice2.expect("8"))

    stats = srv.stats()
    assert stats["resend_requests"] >= 1
    assert stats["session_rejects_sent"] == 0 and stats["rejects_received"] == 0
    assert stats["business_rejects"] == 0
    for app in (alice, bob, alice2):
        assert app.rejects_sent == [] and app.rejects_received == []
