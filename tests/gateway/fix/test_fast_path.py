"""The session's compiled fast path (:mod:`tickline.gateway.fix.fast`) changes nothing: two
sessions fed the same bytes in the same reads, one with the fast path and one with only the
full path, stage the same commands, write the same bytes (timestamps and clock-made ExecIDs
normalised), store the same records and end in the same state; on a table of variants, at
every split of a stream into two reads, and under hypothesis (any mix of variants, any
chunking)."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.config import default_config
from tickline.exchange import Exchange
from tickline.gateway.fix import codec, fast
from tickline.gateway.fix import session as session_module
from tickline.gateway.fix.gateway import FixGateway
from tickline.gateway.fix.session import FixSession
from tickline.matching import Command
from tickline.stream.reports import ExecReport

WALL = 1_790_000_000.25  # the sessions' wall clock (SendingTime checks): fixed
SENDER = "MM1"
KEY = "mm1-key-0"
TS = codec.sending_time(WALL).decode()
CLIENT = codec.Encoder(SENDER, "TICKLINE")


class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 1) if key == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class _Side:
    """One session (fast path on or off) on a stubbed exchange that takes every command."""

    def __init__(self, use_fast: bool) -> None:
        cfg = default_config()
        self.dir = tempfile.mkdtemp()
        cfg.fix.store_dir = self.dir
        cfg.limits.burst = 6  # a rate limit the variants reach (the clock stands still)
        cfg.limits.orders_per_second = 1
        cfg.limits.max_in_flight = 4
        cfg.limits.max_client_order_id_bytes = 12
        ex = Exchange(cfg.instruments, engine_config=cfg.engine_config())
        self.submitted: list[Command] = []

        def submit_many(cmds: list[Command], reply: Any, port: Any) -> int:
            self.submitted.extend(cmds)
            return len(cmds)

        ex.submit_many = submit_many  # type: ignore[method-assign]
        self.gw = FixGateway(ex, cfg)
        self.gw.accepting = True
        self.s = FixSession(self.gw)
        self.t = _Transport()
        self.s.connection_made(self.t)  # type: ignore[arg-type]
        self.feed(CLIENT.encode("A", 1, b"98=0\x01108=30\x01141=Y\x01554=%s\x01" % KEY.encode(),
                                now=TS.encode()))
        assert self.s.logged_on
        assert self.s.inbound is not None
        if not use_fast:
            self.s.inbound = None

    def feed(self, data: bytes) -> None:
        self.s.data_received(data)
        self.s.pending.clear()  # answered: in flight only within a read
        self.s.flush()

    def state(self) -> dict[str, Any]:
        s = self.s
        store = s.store
        assert store is not None
        store.flush()
        path = store.path
        assert path is not None
        return {
            "submitted": self.submitted, "out": _norm(bytes(self.t.data)),
            "closed": (s.closed, self.t.closed, s.logout_sent, s.logged_on),
            "seq": (store.next_in, store.next_out, store.last_report, s.resend_until),
            "buffer": bytes(s.reader.buf), "tokens": s.rate.tokens,
            "counters": self.gw._counters(), "status_seq": s.status_seq,
            "store": _norm(path.read_bytes()),
        }

    def close(self) -> None:
        """Close the session store's file (hundreds of sides per run: no leaked fds, which
        pushed a later test's QuickFIX socket past select()'s 1024)."""
        for store in self.gw.stores.values():
            store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_STAMP = re.compile(rb"\d{8}-\d\d:\d\d:\d\d\.\d{3}")
_CHECKSUM = re.compile(rb"\x0110=\d{3}\x01")
_EXEC_ID = re.compile(rb"R\d+-\d+")


def _norm(data: bytes) -> bytes:
    """Outbound bytes without what the clock makes: SendingTime/TransactTime (same width),
    CheckSum, and the ExecIDs of gateway refusals (``R<account>-<ns>``)."""
    return _EXEC_ID.sub(b"R-ID", _CHECKSUM.sub(b"\x0110=CS\x01", _STAMP.sub(b"TS", data)))


def _frame(mt: str, seq: int, body: bytes, *, sender: str = SENDER, extra: bytes = b"",
           bad_sum: bool = False, len_delta: int = 0, ts: str = TS) -> bytes:
    payload = b"35=%s\x0149=%s\x0156=TICKLINE\x0134=%d\x01%s52=%s\x01%s" % (
        mt.encode(), sender.encode(), seq, extra, ts.encode(), body)
    msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(payload) + len_delta, payload)
    return msg + b"10=%03d\x01" % ((codec.byte_sum(msg) + (1 if bad_sum else 0)) & 0xFF)


def _order(clid: str, *, price: str = "99.50", symbol: str = "AAPL", tif: str = "1",
           ord_type: str = "2") -> bytes:
    body = b"11=%s\x0155=%s\x0154=1\x0160=%s\x0138=1\x0140=%s\x01" % (
        clid.encode(), symbol.encode(), TS.encode(), ord_type.encode())
    if ord_type == "2":
        body += b"44=%s\x01" % price.encode()
    return body + b"59=%s\x01" % tif.encode()


# each variant: (seq) -> (bytes, the next seq the client uses)
VARIANTS: dict[str, Any] = {
    "D": lambda n: (_frame("D", n, _order(f"L{n}")), n + 1),
    "D market": lambda n: (_frame("D", n, _order(f"M{n}", ord_type="1")), n + 1),
    "F": lambda n: (_frame("F", n, b"11=C%d\x0141=L2\x0155=AAPL\x0154=1\x0160=%s\x01" % (
        n, TS.encode())), n + 1),
    "F by id": lambda n: (_frame("F", n, b"11=C%d\x0141=L2\x0137=17\x0155=AAPL\x0154=1\x01"
                                           b"60=%s\x01" % (n, TS.encode())), n + 1),
    "G": lambda n: (_frame("G", n, b"11=G%d\x0141=L2\x0155=AAPL\x0154=1\x0160=%s\x0138=2\x01"
                                     b"40=2\x0144=99.75\x01" % (n, TS.encode())), n + 1),
    "heartbeat": lambda n: (_frame("0", n, b""), n + 1),
    "test request": lambda n: (_frame("1", n, b"112=T%d\x01" % n), n + 1),
    "unknown symbol": lambda n: (_frame("D", n, _order(f"U{n}", symbol="ZZZZ")), n + 1),
    "long ClOrdID": lambda n: (_frame("D", n, _order(f"LONG{n:020d}")), n + 1),
    "off-tick price": lambda n: (_frame("D", n, _order(f"P{n}", price="99.505")), n + 1),
    "unsupported TIF": lambda n: (_frame("D", n, _order(f"T{n}", tif="2")), n + 1),
    "bad value": lambda n: (_frame("D", n, _order(f"V{n}", price="9x")), n + 1),
    "PossDup resent": lambda n: (_frame("D", max(n - 1, 2), _order(f"L{n}"),
                                        extra=b"43=Y\x01122=%s\x01" % TS.encode()), n),
    "PossDup expected": lambda n: (_frame("D", n, _order(f"L{n}"),
                                          extra=b"43=Y\x01122=%s\x01" % TS.encode()), n + 1),
    "PossDup no 122": lambda n: (_frame("D", n, _order(f"L{n}"), extra=b"43=Y\x01"), n + 1),
    "gap": lambda n: (_frame("D", n + 2, _order(f"L{n}")), n + 3),
    "too low": lambda n: (_frame("D", max(n - 1, 1), _order(f"L{n}")), n),
    "wrong CompID": lambda n: (_frame("D", n, _order(f"L{n}"), sender="XX"), n + 1),
    "bad CheckSum": lambda n: (_frame("D", n, _order(f"L{n}"), bad_sum=True), n),
    "BodyLength short": lambda n: (_frame("D", n, _order(f"L{n}"), len_delta=-3), n),
    "BodyLength long": lambda n: (_frame("D", n, _order(f"L{n}"), len_delta=4), n),
    "junk": lambda n: (b"\x01garbage 8=FI", n),
    "old SendingTime": lambda n: (_frame("D", n, _order(f"L{n}"),
                                         ts="20200101-00:00:00.000"), n + 1),
    "undefined tag": lambda n: (_frame("D", n, _order(f"L{n}") + b"9999=1\x01"), n + 1),
    "sequence reset": lambda n: (_frame("4", n, b"123=Y\x0136=%d\x01" % (n + 1)), n + 1),
    "resend request": lambda n: (_frame("2", n, b"7=1\x0116=0\x01"), n + 1),
    "business reject": lambda n: (_frame("B", n, b"148=news\x01"), n + 1),
    "logon again": lambda n: (_frame("A", n, b"98=0\x01108=30\x01"), n + 1),
    "logout": lambda n: (_frame("5", n, b""), n + 1),
}


def _stream(names: list[str]) -> bytes:
    out = bytearray()
    n = 2
    for name in names:
        data, n = VARIANTS[name](n)
        out += data
    return bytes(out)


def _compare(stream: bytes, cuts: list[int]) -> dict[str, Any]:
    """Feed ``stream`` split at ``cuts`` to both sides; assert the same outcome."""

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        states = []
        for use_fast in (True, False):
            side = _Side(use_fast)
            prev = 0
            for cut in [*cuts, len(stream)]:
                side.feed(stream[prev:cut])
                prev = cut
            states.append(side.state())
            side.close()
        return states[0], states[1]

    fast_state, full_state = asyncio.run(run())
    assert fast_state == full_state
    return fast_state


@pytest.fixture(autouse=True)
def _still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's clocks stand still (SendingTime checks, the rate limiter's refill)."""
    monkeypatch.setattr(session_module, "time",
                        types.SimpleNamespace(time=lambda: WALL, monotonic=lambda: 1000.0))


def test_plain_orders_take_the_fast_path() -> None:
    async def run() -> None:
        side = _Side(True)
        before = side.gw.messages_in
        inbound = side.s.inbound
        assert inbound is not None
        staged: list[Command] = []
        ctx: list[tuple[str, dict[int, str]]] = []
        handled = inbound.read(_stream(["D", "F", "heartbeat", "G"]), WALL, 1000.0, 0,
                               staged, ctx)
        assert handled == 4 and len(staged) == 3 and not side.s.reader.buf
        assert [mt for mt, _ in ctx] == ["D", "F", "G"]
        assert side.gw.messages_in == before  # counted by the session, not here
        assert side.s.store is not None and side.s.store.next_in == 6
        side.close()

    asyncio.run(run())


def test_the_fast_path_stops_at_the_first_unusual_message() -> None:
    async def run() -> None:
        side = _Side(True)
        inbound = side.s.inbound
        assert inbound is not None
        stream = _stream(["D", "test request", "D"])
        first = len(VARIANTS["D"](2)[0])
        staged: list[Command] = []
        assert inbound.read(stream, WALL, 1000.0, 0, staged, []) == 1
        assert bytes(side.s.reader.buf) == stream[first:]  # left for the full path, as is
        side.close()

    asyncio.run(run())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_between_plain_orders(name: str) -> None:
    state = _compare(_stream(["D", name, "D", "F", name, "G", "D"]), [])
    assert state["counters"]["messages_in"] >= 1


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_one_message_per_read(name: str) -> None:
    names = ["D", name, "D", "heartbeat", name, "G"]
    stream = _stream(names)
    cuts = []
    pos = 0
    n = 2
    for v in names[:-1]:
        data, n = VARIANTS[v](n)
        pos += len(data)
        cuts.append(pos)
    _compare(stream, cuts)


def test_a_stream_split_in_two_at_every_byte() -> None:
    stream = _stream(["D", "F", "gap", "D", "PossDup resent", "bad CheckSum", "G", "D"])
    for cut in range(len(stream) + 1):
        _compare(stream, [cut])


def test_the_rate_limit_and_max_in_flight_are_the_same() -> None:
    one = len(VARIANTS["D"](2)[0])  # the same length up to seq 9: one order per read
    state = _compare(_stream(["D"] * 8 + ["heartbeat"] * 2 + ["D"] * 6),
                     [one * k for k in range(1, 8)])
    assert state["counters"]["rate_limited"] > 0 and state["counters"]["orders_refused"] > 0
    state = _compare(_stream(["D"] * 6), [])  # one read: 4 in flight, then THROTTLED
    assert len(state["submitted"]) == 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(sorted(VARIANTS)), min_size=1, max_size=14),
       st.lists(st.integers(min_value=0, max_value=4000), max_size=6))
def test_any_mix_in_any_reads(names: list[str], cuts: list[int]) -> None:
    stream = _stream(names)
    _compare(stream, sorted(min(c, len(stream)) for c in cuts))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["D", "F", "G", "heartbeat"]), min_size=1, max_size=8),
       st.binary(max_size=40), st.integers(min_value=0, max_value=2000))
def test_garbled_bytes_anywhere(names: list[str], noise: bytes, at: int) -> None:
    stream = _stream(names)
    at = min(at, len(stream))
    _compare(stream[:at] + noise + stream[at:], [at])


def test_one_send_path_for_reports_and_other_messages() -> None:
    """:func:`fast.report` writes what send_app of exec_report's body writes, stores the same
    record and records the report as delivered."""

    async def run() -> None:
        side = _Side(True)
        s = side.s
        assert s.store is not None and s.encoder is not None
        inst = s.gw.instruments["AAPL"]
        r = ExecReport(seq=5, ts=1, account=11, kind=1, symbol="AAPL", order_id=77,
                       client_order_id="L123", side=1, price=9950, quantity=1, leaves=1)
        out = bytearray()
        seq = s.store.next_out
        fast.report(out, s.store, s.encoder, r, inst, None, "")
        ts = _STAMP.search(bytes(out))
        assert ts is not None
        from tickline.gateway.fix import app
        body = app.exec_report(r, inst, ts.group())
        assert bytes(out) == s.encoder.encode("8", seq, body, now=ts.group())
        assert s.store.next_out == seq + 1 and s.store.last_report == 5
        assert s.store.message(seq) == (b"8", ts.group(), body)
        side.close()

    asyncio.run(run())


def _frame_at_reference(buf: bytearray, pos: int, n: int, max_body: int) -> bytes | None:
    """:func:`codec.frame_at` as the framer's fast branch had it (slices, ``startswith``,
    ``isdigit``, two byte sums): the byte-by-byte version must decide the same."""
    if not buf.startswith(b"8=FIX.4.4\x019=", pos):
        return None
    len_end = buf.find(b"\x01", pos + 12, pos + 21)
    if len_end <= 0:
        return None
    length = buf[pos + 12:len_end]
    if not length.isdigit() or int(length) > max_body:
        return None
    body_end = len_end + 1 + int(length)
    end = body_end + 7
    if (end > n or not buf.startswith(b"35=", len_end + 1)
            or not buf.startswith(b"10=", body_end) or buf[end - 1] != 1):
        return None
    msg = bytes(buf[pos:end])
    trailer = msg[-4:-1]
    if trailer.isdigit() and int(trailer) == (codec.byte_sum(msg) - codec.byte_sum(msg[-7:])) \
            & 0xFF:
        return msg
    return None


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["D", "F", "G", "heartbeat", "test request", "bad CheckSum",
                        "BodyLength short", "BodyLength long", "junk"]),
       st.lists(st.tuples(st.integers(min_value=0, max_value=300), st.integers(0, 255)),
                max_size=3),
       st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=3),
       st.sampled_from([200, 1 << 16]))
def test_frame_at_decides_like_the_reference(name: str, flips: list[tuple[int, int]],
                                             cut: int, pos: int, max_body: int) -> None:
    data = bytearray(b"x" * pos + VARIANTS[name](2)[0] + VARIANTS["D"](3)[0])
    for at, value in flips:
        if at < len(data):
            data[at] = value
    n = min(len(data), pos + cut) if cut else len(data)
    assert codec.frame_at(data, pos, n, max_body) == _frame_at_reference(data, pos, n, max_body)
