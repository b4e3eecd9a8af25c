"""Hostile clients of the WebSocket gateway (issue 14 items 3, 4, 5, 6, 8), over real sockets:
deeply nested JSON, a reader mutating the shared stats sample, DNS rebinding, clients that
connect and never log in, wrong-key login bursts, oversized client order ids."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tickline.config import ServerConfig

from .test_http import CONFIG, get, read_until, request, running, settle, ws_connect

_UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def _config(**limits: Any) -> ServerConfig:
    return msgspec.structs.replace(CONFIG, limits=msgspec.structs.replace(CONFIG.limits,
                                                                          **limits))


async def _expect_error(ws: ClientConnection, code: str) -> dict[str, Any]:
    got = await read_until(ws, lambda m: m["type"] == "error")
    assert got[-1]["code"] == code, got[-1]
    return got[-1]


async def _closed_code(ws: ClientConnection, timeout: float = 5.0) -> int:
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(read_until(ws, lambda m: False, timeout=timeout), timeout)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


# --- item 3: nesting -----------------------------------------------------------------------


def _nested(depth: int) -> list[tuple[str, str]]:
    """Deep nesting with mixed brackets, closed and unclosed, at top level and inside a
    known op; with the code each must get."""
    mixed_open = '{"a":[' * depth
    return [
        (mixed_open + "1" + "]}" * depth, "invalid_json"),           # valid, just deep
        (mixed_open, "invalid_json"),                                   # unterminated
        ('{"op":"ping","id":' + '[{"b":' * depth, "invalid_json"),  # inside a known op
        ('{"op":"subscribe","channels":["depth"],"symbol":"AAPL","x":' + mixed_open,
         "invalid_json"),
        ("[{" * depth, "invalid_message"),  # top level not an object: refused at once
    ]


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_gets_a_typed_error_and_the_session_lives(
        tmp_path: Path, depth: int, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: ``{"a":[`` a thousand times (under 4 KiB at depth 1,000 with the short
    key) raised RecursionError past the decode-error handling and closed the session 1011."""

    async def scenario() -> None:
        async with running(tmp_path, max_message_bytes=1 << 20,
                           max_frame_bytes=1 << 21) as (ex, gw):
            seq = ex.engine.last_seq
            ws = await ws_connect(gw.port, max_size=None)
            cases = _nested(depth)
            for raw, code in cases:
                await request(ws, raw)
                err = await _expect_error(ws, code)
                assert err["message"]
            await request(ws, {"op": "ping", "id": "alive"})
            got = await read_until(ws, lambda m: m["type"] == "pong")
            assert got[-1] == {"type": "pong", "id": "alive"}
            assert gw.session_count() == 1 and ex.engine.last_seq == seq
            assert gw.statistics().ws_errors == len(cases)
            await ws.close()

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_thousand_deep_fits_the_default_message_limit(tmp_path: Path) -> None:
    """The issue's size: 1,000 brackets in under 4 KiB, with the default limits."""
    raw = '{"a":[' * 500
    assert len(raw) < 4096 and raw.count("{") + raw.count("[") == 1000

    async def scenario() -> None:
        async with running(tmp_path) as (_ex, gw):
            ws = await ws_connect(gw.port)
            await request(ws, raw)
            await _expect_error(ws, "invalid_json")
            await request(ws, {"op": "ping", "id": 2})
            assert (await read_until(ws, lambda m: m["type"] == "pong"))[-1]["id"] == 2
            await ws.close()

    asyncio.run(scenario())


# --- item 4: /stats.json must not change what WebSocket subscribers get ----------------------


def test_stats_json_before_the_first_sample_leaves_the_shared_sample_alone(
        tmp_path: Path) -> None:
    """Regression: ``GET /stats.json`` before the first sampler tick popped ``type`` from the
    sample that WebSocket ``stats`` subscribers then received."""

    async def scenario() -> None:
        async with running(tmp_path, stats_interval=0.3) as (_ex, gw):
            r = await get(gw.port, "/stats.json")  # before the first tick
            assert r.status == 200
            body = r.json()
            assert "type" not in body and body["commands"] == 0 and "stages" in body
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "subscribe", "channels": ["stats"]})
            got = await read_until(ws, lambda m: m.get("type") == "stats")
            assert all("type" in m for m in got), got
            # After ticks: a reader again, then a new subscriber gets the stored sample at once.
            for _ in range(3):
                r = await get(gw.port, "/stats.json")
                assert r.status == 200 and "type" not in r.json()
            late = await ws_connect(gw.port)
            await request(late, {"op": "subscribe", "channels": ["stats"]})
            got = await read_until(late, lambda m: m.get("type") not in ("subscribed",),
                                   timeout=5)
            assert got[-1]["type"] == "stats" and got[-1]["stages"], got[-1]
            got = await read_until(ws, lambda m: m.get("type") == "stats")
            assert got[-1]["type"] == "stats"
            await ws.close()
            await late.close()

    asyncio.run(scenario())


# --- item 8: origins -------------------------------------------------------------------------


def test_origin_is_checked_against_listen_addresses_and_the_allow_list(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, allowed_origins=("https://dash.example.com",)) as (_e, gw):
            port = gw.port
            # DNS rebinding: the page's own name now points here; Host and Origin agree.
            for path in ("/ws", "/book/AAPL", "/stats.json"):
                r = await get(port, path, host=f"evil.example:{port}",
                              headers={"Origin": f"http://evil.example:{port}", **_UPGRADE})
                assert r.status == 403 and r.json()["error"] == "forbidden_origin", path
            for bad in (f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}.evil.example",
                        "null", "https://dash.example.com:444", "http://dash.example.com",
                        f"file://127.0.0.1:{port}"):
                r = await get(port, "/ws", headers={"Origin": bad, **_UPGRADE})
                assert r.status == 403, bad
            # Its own addresses (loopback equivalents), the allow-list, and no Origin at all.
            for good in (f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                         f"http://[::1]:{port}", f"https://LOCALHOST:{port}",
                         "https://dash.example.com", "https://dash.example.com:443", None):
                ws = await ws_connect(port, origin=good)
                await request(ws, {"op": "ping", "id": 1})
                assert (await read_until(ws, lambda m: m["type"] == "pong"))[-1]["id"] == 1
                await ws.close()
            r = await get(port, "/book/AAPL")
            assert r.status == 200

    asyncio.run(scenario())


# --- item 5: budgets for sessions that have not logged in ----------------------------------


def test_anonymous_budget_full_a_login_still_gets_in(tmp_path: Path) -> None:
    """``max_anonymous`` idle clients that answer pings but never log in: a client that logs
    in still gets a session; idle clients beyond the budget are on probation and closed
    after ``login_timeout_seconds``; the anonymous ones keep their market data."""

    async def scenario() -> None:
        async with running(tmp_path, max_sessions=6, max_anonymous=2, max_per_address=100,
                           login_timeout_seconds=0.5) as (ex, gw):
            port = gw.port
            anon = [await ws_connect(port) for _ in range(2)]
            for ws in anon:
                await request(ws, {"op": "subscribe", "symbol": "AAPL", "channels": ["depth"]})
                await read_until(ws, lambda m: m["type"] == "snapshot")
            # The anonymous budget is full. An honest client gets in on probation and logs in.
            honest = await ws_connect(port)
            await request(honest, {"op": "subscribe", "symbol": "AAPL", "channels": ["depth"]})
            err = await _expect_error(honest, "not_authenticated")
            assert "max_anonymous" in err["message"]
            await request(honest, {"op": "login", "key": "alice-key"})
            await read_until(honest, lambda m: m["type"] == "login")
            await request(honest, {"op": "subscribe", "symbol": "AAPL", "channels": ["depth"]})
            await read_until(honest, lambda m: m["type"] == "snapshot")
            st = gw.statistics()
            assert st.ws_sessions_active == 3 and st.ws_sessions_anonymous == 2
            # Idle clients fill every remaining slot ...
            idle = [await ws_connect(port) for _ in range(3)]
            with pytest.raises(InvalidStatus) as info:
                await ws_connect(port)
            assert info.value.response.status_code == 503
            assert b"too_many_sessions" in info.value.response.body
            # ... but only until the login deadline: 1008, then the slots are free again.
            for ws in idle:
                assert await _closed_code(ws) == 1008
            assert gw.statistics().ws_login_timeouts == 3
            late = await ws_connect(port)
            await request(late, {"op": "login", "key": "bob-key-3"})
            await read_until(late, lambda m: m["type"] == "login")
            # The logged-in session outlives the deadline; the anonymous ones still get data.
            await asyncio.sleep(0.7)
            await request(honest, {"op": "ping", "id": "h"})
            await read_until(honest, lambda m: m["type"] == "pong")
            await request(late, {"op": "new_order", "symbol": "AAPL", "side": "buy",
                                 "price": "99.00", "quantity": "1"})
            await read_until(late, lambda m: m["type"] == "exec")
            await settle(ex)
            for ws in anon:
                got = await read_until(ws, lambda m: m["type"] == "depth")
                assert got[-1]["bids"] == [["99.00", "1", 1]]
            assert gw.session_count() == 4
            for ws in (*anon, honest, late):
                await ws.close()

    asyncio.run(scenario())


def test_per_address_cap_on_sessions_not_logged_in(tmp_path: Path) -> None:
    """``max_per_address`` counts sessions that have not logged in, per source address
    (127.0.0.2 is another address on the loopback interface)."""

    async def scenario() -> None:
        async with running(tmp_path, max_per_address=2) as (_ex, gw):
            port = gw.port
            first = [await ws_connect(port) for _ in range(2)]
            with pytest.raises(InvalidStatus) as info:
                await ws_connect(port)
            assert info.value.response.status_code == 503
            assert b"too_many_from_address" in info.value.response.body
            other = await ws_connect(port, local_addr=("127.0.0.2", 0))  # another address
            await request(other, {"op": "ping", "id": 1})
            await read_until(other, lambda m: m["type"] == "pong")
            # A login frees its address's slot.
            await request(first[0], {"op": "login", "key": "alice-key"})
            await read_until(first[0], lambda m: m["type"] == "login")
            third = await ws_connect(port)
            assert gw.statistics().ws_sessions_refused == 1
            for ws in (*first, other, third):
                await ws.close()

    asyncio.run(scenario())


def test_wrong_key_logins_are_throttled_per_address_and_counted(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, login_failure_burst=3,
                           login_failures_per_second=2.0) as (_ex, gw):
            port = gw.port
            s1 = await ws_connect(port)
            for _ in range(2):
                await request(s1, {"op": "login", "key": "wrong-key-1234"})
                await _expect_error(s1, "bad_credentials")
            s2 = await ws_connect(port)
            for _ in range(6):  # a burst: one more is checked, then refused unchecked
                await request(s2, {"op": "login", "key": "wrong-key-5678"})
            got = await read_until(s2, lambda m: m["type"] == "error" and
                                   m["code"] == "rate_limited" and
                                   sum(x["type"] == "error" for x in seen) == 6,
                                   sink=seen.append)
            codes = [m["code"] for m in seen if m["type"] == "error"]
            assert codes == ["bad_credentials"] + ["rate_limited"] * 5, codes
            assert "retry in" in got[-1]["message"]
            # Throttled means unchecked: even the right key is refused from this address ...
            await request(s2, {"op": "login", "key": "alice-key"})
            await _expect_error(s2, "rate_limited")
            # ... but not from another address.
            s3 = await ws_connect(port, local_addr=("127.0.0.2", 0))
            await request(s3, {"op": "login", "key": "bob-key-3"})
            await read_until(s3, lambda m: m["type"] == "login")
            # The bucket refills (2 per second): the right key then works.
            await asyncio.sleep(0.6)
            await request(s2, {"op": "login", "key": "alice-key"})
            await read_until(s2, lambda m: m["type"] == "login")
            st = gw.statistics()
            assert st.ws_login_failures == 3 and st.ws_login_throttled == 6
            r = await get(port, "/metrics")
            families = {f.name: f for f in text_string_to_metric_families(r.body.decode())}
            assert families["tickline_ws_login_failures"].samples[0].value == 3
            assert families["tickline_ws_login_throttled"].samples[0].value == 6
            errors = {s.labels["code"]: s.value for s in families["tickline_ws_errors"].samples}
            assert errors["bad_credentials"] == 3 and errors["rate_limited"] == 6
            for ws in (s1, s2, s3):
                await ws.close()

    seen: list[dict[str, Any]] = []
    t0 = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - t0 < 10


# --- item 6: client order id cap -------------------------------------------------------------


@pytest.mark.parametrize("limit", [64, 8])
def test_client_order_id_cap_comes_from_the_configuration(tmp_path: Path, limit: int) -> None:
    config = CONFIG if limit == 64 else _config(max_client_order_id_bytes=limit)

    async def scenario() -> None:
        async with running(tmp_path, config) as (ex, gw):
            ws = await ws_connect(gw.port)
            await request(ws, {"op": "login", "key": "alice-key"})
            await read_until(ws, lambda m: m["type"] == "login")
            seq = ex.engine.last_seq
            order = {"op": "new_order", "symbol": "AAPL", "side": "buy", "price": "99.00",
                     "quantity": "1"}
            too_long = ["x" * (limit + 1), "é" * (limit // 2 + 1)]  # bytes, not characters
            for cid in too_long:
                await request(ws, {**order, "client_order_id": cid})
                err = await _expect_error(ws, "invalid_order")
                assert f"max_client_order_id_bytes={limit}" in err["message"]
                assert f"{len(cid.encode())} bytes" in err["message"]
                await request(ws, {"op": "cancel", "symbol": "AAPL", "client_order_id": cid})
                await _expect_error(ws, "invalid_order")
            await settle(ex)
            assert ex.engine.last_seq == seq  # nothing reached the exchange
            ok = "y" * limit
            await request(ws, {**order, "client_order_id": ok})
            got = await read_until(ws, lambda m: m["type"] == "exec")
            assert got[-1]["kind"] == "new" and got[-1]["client_order_id"] == ok
            await request(ws, {"op": "cancel", "symbol": "AAPL", "client_order_id": ok})
            got = await read_until(ws, lambda m: m["type"] == "exec" and m["kind"] != "new")
            assert got[-1]["kind"] == "cancelled"
            await ws.close()

    asyncio.run(scenario())
