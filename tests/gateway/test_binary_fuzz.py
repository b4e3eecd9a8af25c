"""Property-based fuzzing of whole binary sessions against a live gateway: random bytes,
truncated frames, oversized lengths, valid MessagePack of the wrong shape, foreign order ids
and floods. Each bad frame gets exactly one typed Error, nothing reaches the book, the server
survives and keeps serving well-behaved sessions."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickline.gateway import protocol as p
from tickline.matching import RejectReason

from .binary_harness import RawClient, ServerThread, make_config


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    config = make_config(orders_per_second=1e6, burst=100_000)
    with ServerThread(config) as s:
        with RawClient(s.port) as owner:  # an order of another account to aim at
            owner.logon("bob-key-3")
            owner.send(p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=5,
                                         price=10_000))
            resp = owner.recv_type(p.Response)
            assert isinstance(resp.reports[0], p.OrderAccepted)
            s.foreign_order_id = resp.reports[0].order_id  # type: ignore[attr-defined]
        yield s


def _payload_is_valid(payload: bytes) -> bool:
    try:
        p.decode_client(payload)
    except msgspec.DecodeError:
        return False
    return True


# Payloads that are never valid client messages.
_bad_payloads = st.one_of(
    st.binary(min_size=1, max_size=64).filter(lambda b: not _payload_is_valid(b)),
    st.builds(lambda tag, fields: msgspec.msgpack.encode([tag, *fields]),
              st.sampled_from([1, 10, 11, 12, 20, 30, 99]),
              st.lists(st.one_of(st.text(max_size=4), st.floats(), st.none(),
                                 st.lists(st.integers(-(1 << 63), 1 << 63), max_size=2)),
                        max_size=6)
              ).filter(lambda b: not _payload_is_valid(b)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(st.lists(_bad_payloads, min_size=1, max_size=8))
def test_fuzz_malformed_frames_each_get_one_error_and_change_nothing(
        server: ServerThread, payloads: list[bytes]) -> None:
    before = server.digest()
    with RawClient(server.port) as c:
        c.logon("alice-key")
        c.send_bytes(b"".join(len(x).to_bytes(4, "big") + x for x in payloads))
        for _ in payloads:
            err = c.recv_type(p.Error)
            assert err.code == p.ErrorCode.MALFORMED
        # the session is intact: a heartbeat round trip still works
        c.send(p.TestRequest(77))
        assert c.recv_type(p.Heartbeat) == p.Heartbeat(77)
    server.settle()
    assert server.digest() == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_fuzz_random_bytes_never_hurt_the_server(server: ServerThread, data: bytes,
                                                 logged_on: bool) -> None:
    """Arbitrary bytes (maybe after a Logon): the server answers with typed messages only,
    may close the connection, never changes the book except through a valid order."""
    before = server.digest()
    answered = 0
    with RawClient(server.port, timeout=2) as c:
        if logged_on:
            c.logon("alice-key")
        c.send_bytes(data)
        c.send(p.TestRequest(5))  # may be swallowed by a partial frame: that is fine
        try:
            while True:
                msg = c.recv(timeout=0.3)
                assert isinstance(msg, (p.Error, p.Heartbeat, p.Response, p.LogonAck,
                                        p.LogonReject, p.Logout, p.TestRequest))
                answered += isinstance(msg, p.Response)
                if isinstance(msg, p.Heartbeat) and msg.test_id == 5:
                    break
        except (TimeoutError, ConnectionError):
            pass
    server.settle()
    if not answered:  # only an accepted request (a Response) may change the book
        assert server.digest() == before
    server.call(lambda: server.exchange.engine.check())
    # the server still serves a well-behaved session
    with RawClient(server.port) as ok:
        ok.logon("alice-key")
        ok.send(p.TestRequest(1))
        assert ok.recv_type(p.Heartbeat).test_id == 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(4097, (1 << 32) - 1), st.binary(max_size=32))
def test_fuzz_oversized_lengths_close_without_reading_the_payload(
        server: ServerThread, length: int, tail: bytes) -> None:
    before = server.digest()
    with RawClient(server.port) as c:
        c.logon("alice-key")
        c.send_bytes(length.to_bytes(4, "big") + tail)
        err = c.recv_type(p.Error)
        assert err.code == p.ErrorCode.FRAME_TOO_LARGE
        assert str(length) in err.text
        assert c.closed_by_server()
    assert server.digest() == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["cancel", "replace"]),
                          st.integers(0, 3), st.integers(1, 20_000)), min_size=1, max_size=10))
def test_fuzz_foreign_and_unknown_order_ids(server: ServerThread,
                                            ops: list[tuple[str, int, int]]) -> None:
    """Cancels/replaces of another account's order or of random ids: typed rejects only, and
    the same answer for both (a foreign order id is indistinguishable from a missing one)."""
    foreign = server.foreign_order_id  # type: ignore[attr-defined]
    before = server.digest()
    with RawClient(server.port) as c:
        c.logon("alice-key")
        order_ids = []
        for i, (op, pick, price) in enumerate(ops, start=1):
            order_id = foreign if pick == 0 else foreign + 1000 * pick
            order_ids.append(order_id)
            req: msgspec.Struct
            if op == "cancel":
                req = p.CancelRequest(request_id=i, symbol="AAPL", order_id=order_id)
            else:
                req = p.ReplaceRequest(request_id=i, symbol="AAPL", order_id=order_id,
                                       price=price)
            c.send(req)
        for i in range(1, len(ops) + 1):
            resp = c.recv_type(p.Response)
            assert resp.request_id == i
            (rej,) = resp.reports
            assert isinstance(rej, p.OrderRejected)
            assert rej.reason == RejectReason.UNKNOWN_ORDER, rej
            assert (rej.order_id, rej.text) == (
                order_ids[i - 1], f"order {order_ids[i - 1]} is not a live order of 'AAPL'")
    server.settle()
    assert server.digest() == before


def test_flood_of_requests_is_rate_limited_and_the_server_stays_responsive() -> None:
    with ServerThread(make_config(orders_per_second=1000.0, burst=100)) as server, \
            RawClient(server.port) as c:
        c.logon("alice-key")
        n = 3000
        c.send_bytes(bytes(p.encode_frames([
            p.NewOrderRequest(request_id=i, symbol="AAPL", side=2, quantity=1, price=20_000,
                              tif=2) for i in range(1, n + 1)])))
        reasons = []
        for _ in range(n):
            first = c.recv_type(p.Response).reports[0]
            reasons.append(first.reason if isinstance(first, p.OrderRejected) else 0)
        limited = reasons.count(RejectReason.RATE_LIMITED)
        assert 100 <= n - limited <= 200  # the burst plus what refilled during the flood
        assert server.stats()["rate_limited"] == limited
        with RawClient(server.port) as other:
            other.logon("bob-key-3")
            other.send(p.TestRequest(3))
            assert other.recv_type(p.Heartbeat).test_id == 3
