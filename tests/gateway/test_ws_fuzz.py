"""hypothesis fuzzing of the WebSocket JSON handler (:meth:`Session.handle`): arbitrary text,
arbitrary JSON and near-valid requests with hostile field values never raise, always get
typed answers, and a request answered with an error changes nothing in the book.

The session is a real one on a real (in-process) exchange and gateway; only the socket is
absent: ``handle`` queues replies for the sender, which is not started, so the test reads
them from the session's queues.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.test_http import StandInServer, settle
from tickline.config import default_config
from tickline.exchange import Exchange
from tickline.gateway.http import HttpGateway
from tickline.gateway.wssession import Session
from tickline.matching import BUY, SELL, NewOrder
from tickline.stream import ExecReport

CODES = {"invalid_json", "invalid_message", "unknown_op", "unknown_symbol", "unknown_channel",
         "too_large", "binary_not_supported", "too_many_subscriptions", "not_authenticated",
         "bad_credentials", "login_disabled", "already_logged_in", "invalid_order",
         "rate_limited", "busy", "stopping", "unknown_order", "resume_unavailable"}
REPLIES = {"pong", "login", "subscribed", "unsubscribed", "error", "replay", "snapshot"}
OPS = ["subscribe", "unsubscribe", "ping", "login", "new_order", "cancel", "replace",
       "order_status", "open_orders", "mass_cancel", "replay"]
FIELDS = ["symbol", "side", "price", "quantity", "order_type", "tif", "client_order_id",
          "post_only", "expire_time", "stp", "stop_price", "display_quantity", "order_id",
          "orig_client_order_id", "channels", "channel", "from_seq", "to_seq", "id", "key",
          "resume_from", "cancel_on_disconnect", "policy", "buffer", "bogus"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.sampled_from(["AAPL", "BTC-USD", "*", "buy", "sell", "gtd",
                                              "stop", "1e3", "-1", "99.999", "0", "100.00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
near_valid = st.builds(
    lambda op, fields: {"op": op, **fields}, st.sampled_from(OPS),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
frames = (st.text(max_size=200) | json_values.map(json.dumps) | near_valid.map(json.dumps)
          | st.binary(max_size=20))


class Harness:
    """One loop, exchange, gateway and logged-in session for the whole test."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        config = default_config()
        self.ex = Exchange(config.instruments, engine_config=config.engine_config(),
                           journal_dir=tmp / "journal", durability="none",
                           segment_bytes=1 << 20)
        self.runner = self.loop.create_task(self.ex.run())
        self.gw = HttpGateway(StandInServer(self.ex, config), requests_per_second=1e9,
                              request_burst=10**9)
        self.gw.orders_per_second = 1e9
        self.gw.order_burst = 10**9
        self.session = self.loop.run_until_complete(self._session())
        # A resting book so that a wrong cancel or replace would show.
        for i in range(5):
            self.ex.submit(NewOrder(account=11, symbol="AAPL", side=BUY, price=9900 - i,
                                    quantity=3, client_order_id=f"b{i}"))
            self.ex.submit(NewOrder(account=2, symbol="AAPL", side=SELL, price=10100 + i,
                                    quantity=3, client_order_id=f"s{i}"))
        self.loop.run_until_complete(settle(self.ex))

    async def _session(self) -> Session:
        s = Session(self.gw, None, "127.0.0.1", probation=False)  # type: ignore[arg-type]
        s.handle(json.dumps({"op": "login", "key": "alice-key"}))
        return s

    def book(self) -> Any:
        return (self.ex.engine.last_seq, self.ex.engine.books["AAPL"].depth(100),
                sorted(self.ex.engine.orders))

    def close(self) -> None:
        self.loop.run_until_complete(self.ex.stop())
        self.loop.run_until_complete(self.runner)
        self.loop.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("wsfuzz"))
    yield h
    h.close()


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=frames)
def test_ws_handler_never_crashes_and_errors_change_nothing(harness: Harness,
                                                            raw: str | bytes) -> None:
    session = harness.session
    session.control.clear()
    session.execs.clear()
    before = harness.book()
    orders_before = harness.gw.counters.orders

    async def step() -> None:
        session.handle(raw)  # never raises
        await settle(harness.ex)

    harness.loop.run_until_complete(step())
    replies = list(session.control)
    for m in replies:
        assert m["type"] in REPLIES, m
        if m["type"] == "error":
            assert m["code"] in CODES, m
            assert isinstance(m["message"], str) and m["message"]
    for m in session.execs:
        assert isinstance(m, ExecReport) or m["type"] in (
            "order_status", "open_orders", "mass_cancelled", "error"), m
    if any(m["type"] == "error" for m in replies):
        assert harness.gw.counters.orders == orders_before
        assert harness.book() == before
    elif harness.gw.counters.orders == orders_before:
        # Nothing submitted (a ping, a query, a subscription): the book is as it was.
        assert harness.book()[1:] == before[1:]
    assert not session.closing or session.close_reason
