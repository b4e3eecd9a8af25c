"""The stop and iceberg fields on the wire: appended with defaults to ``NewOrderRequest`` and
``ReplaceRequest`` (older frames decode unchanged), and built from decimal strings by the
client like price and quantity. (The gateway's mapping of these fields onto engine commands
is tested end to end in test_venue_sessions.py and test_iceberg_restart.py.)"""

from __future__ import annotations

import msgspec
import pytest

from tickline.client import Client
from tickline.gateway import protocol as p
from tickline.matching import Instrument, InstrumentError, OrderType


def _client() -> Client:
    c = Client()
    c.instruments["BTC-USD"] = Instrument(symbol="BTC-USD", price_decimals=2, qty_decimals=4)
    return c


def test_old_frames_decode_with_default_stop_and_display() -> None:
    old_new = msgspec.msgpack.encode([10, 7, "AAPL", 1, 5, 100, 1, 1, "c", 0, False, 0])
    req = p.decode_client(old_new)
    assert isinstance(req, p.NewOrderRequest)
    assert (req.request_id, req.price, req.stop_price, req.display_quantity) == (7, 100, 0, 0)
    old_replace = msgspec.msgpack.encode([12, 8, "AAPL", 3, "", 101, 0, ""])
    rep = p.decode_client(old_replace)
    assert isinstance(rep, p.ReplaceRequest)
    assert (rep.order_id, rep.price, rep.stop_price, rep.display_quantity) == (3, 101, 0, 0)


def test_new_fields_round_trip_at_the_end_of_the_array() -> None:
    req = p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=50, price=100,
                            order_type=4, stop_price=99, display_quantity=0)
    raw = msgspec.msgpack.encode(req)
    assert msgspec.msgpack.decode(raw)[-2:] == [99, 0]
    assert p.decode_client(raw) == req
    rep = p.ReplaceRequest(request_id=2, symbol="AAPL", order_id=4, stop_price=98,
                           display_quantity=10)
    assert p.decode_client(msgspec.msgpack.encode(rep)) == rep


def test_client_converts_stop_price_and_display_quantity_from_decimals() -> None:
    c = _client()
    req = c.new_order_request("BTC-USD", "buy", "0.5000", "30000.50", order_type="stop_limit",
                              stop_price="30000.25")
    assert (req.order_type, req.price, req.stop_price) == (int(OrderType.STOP_LIMIT),
                                                           3_000_050, 3_000_025)
    req = c.new_order_request("BTC-USD", "sell", "1", order_type="stop", stop_price="29000")
    assert (req.order_type, req.price, req.stop_price) == (3, 0, 2_900_000)
    req = c.new_order_request("BTC-USD", "sell", "2", "31000", display_quantity="0.25")
    assert (req.quantity, req.display_quantity, req.stop_price) == (20_000, 2_500, 0)
    with pytest.raises(ValueError, match="a stop order needs a stop_price"):
        c.new_order_request("BTC-USD", "buy", "1", order_type="stop")
    with pytest.raises(ValueError, match="a stop_limit order needs a price"):
        c.new_order_request("BTC-USD", "buy", "1", order_type="stop_limit", stop_price="1")
    with pytest.raises(InstrumentError, match="more than 2 decimal places"):
        c.new_order_request("BTC-USD", "buy", "1", order_type="stop", stop_price="1.001")


def test_client_replace_sends_stop_price_and_display_quantity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = _client()
    sent: list[object] = []
    monkeypatch.setattr(c, "send_request", sent.append)
    c.send_replace("BTC-USD", 5, stop_price="30100.5", display_quantity="0.1")
    c.send_replace("BTC-USD", 6, price="30000")
    assert [(r.order_id, r.price, r.stop_price, r.display_quantity)  # type: ignore[attr-defined]
            for r in sent] == [(5, 0, 3_010_050, 1_000), (6, 3_000_000, 0, 0)]
