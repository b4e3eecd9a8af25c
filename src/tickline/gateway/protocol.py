"""The binary order-entry wire format: length-prefixed MessagePack frames of typed messages.

Frame layout (every message, both directions)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              payload length N (unsigned, big-endian)          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                                                               |
    :      payload: N bytes of MessagePack, one message:            :
    :      an array [tag, field1, field2, ...] (msgspec array_like) :
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``N`` counts the payload only (not the 4 header bytes) and must be ``1..max_frame_bytes``
(the server's ``limits.max_frame_bytes``, sent in :class:`LogonAck`). The length is checked
*before* any payload byte is buffered beyond it: a frame that announces more is answered with
:class:`Error` (``FRAME_TOO_LARGE``) and the connection is closed, because the stream cannot be
resynchronised. A payload that does not decode to a known message is answered with
:class:`Error` (``MALFORMED``) and the session continues with the next frame.

Decoding is ``msgspec.msgpack.Decoder(type=<tagged union>)``: typed, schema-checked, no
object construction beyond the declared structs, nothing from the wire is ever executed or
looked up by name. Prices and quantities are integers in the instrument's units; the client
converts decimal strings at the edge with :meth:`~tickline.matching.Instrument.price_from_str`
using the instrument definitions the server sends in :class:`LogonAck`.

Messages (tags are stable; never renumber):

====  ===================  =========  ====================================================
tag   message              direction  meaning
====  ===================  =========  ====================================================
1     Logon                c → s      authenticate with an account key (first frame)
2     Logout               both       end the session cleanly (the peer answers Logout)
3     Heartbeat            both       liveness; answers a TestRequest with its ``test_id``
4     TestRequest          both       "are you there?": the peer must send a Heartbeat
10    NewOrderRequest      c → s      enter an order (``request_id`` chosen by the client)
11    CancelRequest        c → s      cancel by engine ``order_id`` or ``orig_client_order_id``
12    ReplaceRequest       c → s      cancel/replace (new price and/or total quantity)
13    OrderStatusRequest   c → s      one order's current state (by id or client order id)
14    OpenOrdersRequest    c → s      the account's open orders (optionally one symbol)
15    MassCancelRequest    c → s      cancel all open orders (optionally one symbol/side)
20    LogonAck             s → c      account, limits and the instrument definitions
21    LogonReject          s → c      bad key / too many sessions; the server then closes
29    Error                s → c      a frame-level problem (``ErrorCode``); nothing changed
30    Response             s → c      every report one request caused for this account,
                                      tagged with its ``request_id`` (exactly one per request)
31    OrderStatusResponse  s → c      the answer to an OrderStatusRequest
32    OpenOrdersResponse   s → c      the answer to an OpenOrdersRequest
40    OrderAccepted        s → c      report: a new order got an engine order id
41    OrderRejected        s → c      report: a request was rejected (``RejectReason``)
42    Fill                 s → c      report: one execution of an order of this account
43    OrderCancelled       s → c      report: an order left the book (``CancelReason``)
44    OrderReplaced        s → c      report: an order took a new price/quantity
45    OrderExpired         s → c      report: a GTD order expired
46    OrderTriggered       s → c      report: an armed stop's stop price was touched; it
                                      entered the book (as market if ``price`` is 0)
====  ===================  =========  ====================================================

Reports appear either inside a :class:`Response` (caused by that request) or alone as
unsolicited frames (passive fills, expiries, and anything another session or gateway did to
this account's orders). ``exec_seq`` is the account's report sequence number: every report
of the account, whichever session it reaches, is numbered 1, 2, 3, ... without gaps, and the
numbers are re-derivable from the server's journal. Reports about an order carry its
cumulative fills (``cum_quantity`` and ``cum_notional``, the sum of price x quantity in
ticks x lots): the exact average price is ``cum_notional / cum_quantity`` (``avg_price``).
"""

from __future__ import annotations

import enum
from fractions import Fraction
from typing import Final

import msgspec

from tickline.matching import Instrument
from tickline.stream.reports import OrderState, OrderStatus

__all__ = [
    "HEADER",
    "MAX_FRAME_DEFAULT",
    "CancelRequest",
    "ClientMessage",
    "Error",
    "ErrorCode",
    "Fill",
    "FrameError",
    "FrameReader",
    "Heartbeat",
    "Logon",
    "LogonAck",
    "LogonReject",
    "Logout",
    "MassCancelRequest",
    "NewOrderRequest",
    "OpenOrdersRequest",
    "OpenOrdersResponse",
    "OrderAccepted",
    "OrderCancelled",
    "OrderExpired",
    "OrderRejected",
    "OrderReplaced",
    "OrderState",
    "OrderStatus",
    "OrderStatusRequest",
    "OrderStatusResponse",
    "OrderTriggered",
    "ReplaceRequest",
    "Report",
    "Response",
    "ServerMessage",
    "SessionKind",
    "TestRequest",
    "append_frame",
    "decode_client",
    "decode_server",
    "encode_frame",
    "encode_frames",
]

HEADER: Final = 4
"""Bytes of the length prefix."""

MAX_FRAME_DEFAULT: Final = 4096
"""Default maximum payload size (the server's ``limits.max_frame_bytes``)."""


class ErrorCode(enum.IntEnum):
    """Frame-level error codes carried by :class:`Error` (stable)."""

    MALFORMED = 1
    """The payload is not a valid message (bad MessagePack, unknown tag, wrong types)."""
    FRAME_TOO_LARGE = 2
    """The length prefix exceeds ``max_frame_bytes`` (the connection is closed)."""
    EMPTY_FRAME = 3
    """The length prefix is 0 (the connection is closed)."""
    NOT_LOGGED_ON = 4
    """A request before a successful Logon (ignored)."""
    ALREADY_LOGGED_ON = 5
    """A second Logon on a logged-on session (ignored)."""
    UNEXPECTED_MESSAGE = 6
    """A server-to-client message sent by the client (ignored)."""
    LOGON_TIMEOUT = 7
    """No Logon within ``login_timeout_seconds`` (the connection is closed)."""
    HEARTBEAT_TIMEOUT = 8
    """The peer was silent too long after a TestRequest (the connection is closed)."""
    SLOW_CONSUMER = 9
    """The client stopped reading and its output buffer overflowed (closed; best effort)."""
    SHUTTING_DOWN = 10
    """The server is stopping."""
    RESUME_FAILED = 11
    """The missed reports of a resume could not be read (the connection is closed)."""


# --- client -> server ------------------------------------------------------------------------


class SessionKind(enum.IntEnum):
    """What a session is for (``Logon.kind``; stable codes)."""

    TRADING = 0
    """Orders and their reports (the default)."""
    DROP_COPY = 1
    """Read-only: every report of the account, whichever session or gateway caused it."""
    DROP_COPY_ALL = 2
    """Read-only: every report of every account (accounts marked ``admin`` only)."""


class Logon(msgspec.Struct, tag=1, array_like=True, gc=False, frozen=True):
    """Authenticate with an account key. Must be the first frame.

    ``resume_from``: the last account report sequence number (``exec_seq``) the client has
    processed; the server first sends every report of the account numbered above it (as
    unsolicited reports, in order, up to ``LogonAck.last_report_seq``), then continues live:
    no gap, no duplicate, across reconnects and server restarts. 0 with ``resume`` false:
    live only. ``cancel_on_disconnect``: when this session's connection drops (or misses its
    heartbeats), every open order it entered is cancelled (a journaled command).
    """

    key: str
    client_name: str = ""
    resume_from: int = 0
    resume: bool = False
    cancel_on_disconnect: bool = False
    kind: int = 0


class Logout(msgspec.Struct, tag=2, array_like=True, gc=False, frozen=True):
    """End the session. The receiver answers with Logout and closes."""

    text: str = ""


class Heartbeat(msgspec.Struct, tag=3, array_like=True, gc=False, frozen=True):
    """Liveness; ``test_id`` echoes the :class:`TestRequest` it answers (0: none)."""

    test_id: int = 0


class TestRequest(msgspec.Struct, tag=4, array_like=True, gc=False, frozen=True):
    """Ask the peer for a :class:`Heartbeat` carrying ``test_id``."""

    __test__ = False  # not a pytest test class
    test_id: int


class NewOrderRequest(msgspec.Struct, tag=10, array_like=True, gc=False, kw_only=True):
    """Enter an order. Fields as :class:`tickline.matching.NewOrder` (integer units); the
    account is the session's. ``request_id`` is echoed in the :class:`Response`."""

    request_id: int
    symbol: str
    side: int
    quantity: int
    price: int = 0
    order_type: int = 1
    tif: int = 1
    client_order_id: str = ""
    expire_time: int = 0
    post_only: bool = False
    stp: int = 0
    stop_price: int = 0
    """Ticks; required by stop (3) and stop-limit (4) orders. Appended last, with a default,
    so frames from older clients still decode."""
    display_quantity: int = 0
    """Lots shown in the book for an iceberg (0: all). Appended last, like ``stop_price``."""


class CancelRequest(msgspec.Struct, tag=11, array_like=True, gc=False, kw_only=True):
    """Cancel one of the session account's orders by ``order_id`` (or, when 0, by
    ``orig_client_order_id``)."""

    request_id: int
    symbol: str
    order_id: int = 0
    orig_client_order_id: str = ""
    client_order_id: str = ""


class OrderStatusRequest(msgspec.Struct, tag=13, array_like=True, gc=False, kw_only=True):
    """An order's current state, by ``order_id`` (or, when 0, ``client_order_id``). Only the
    owning account gets an answer; any other gets ``UNKNOWN_ORDER``, as for no such order."""

    request_id: int
    symbol: str
    order_id: int = 0
    client_order_id: str = ""


class OpenOrdersRequest(msgspec.Struct, tag=14, array_like=True, gc=False, kw_only=True):
    """The account's open orders (``symbol`` "" = every symbol)."""

    request_id: int
    symbol: str = ""


class MassCancelRequest(msgspec.Struct, tag=15, array_like=True, gc=False, kw_only=True):
    """Cancel every open order of the account (``symbol`` "" = all symbols, ``side`` 0 = both
    sides): one journaled command, answered with a Response holding a cancel report per
    order."""

    request_id: int
    symbol: str = ""
    side: int = 0


class ReplaceRequest(msgspec.Struct, tag=12, array_like=True, gc=False, kw_only=True):
    """Cancel/replace: ``price`` 0 keeps the price, ``quantity`` 0 keeps the total,
    ``stop_price`` 0 keeps an armed stop's stop price, ``display_quantity`` 0 keeps an
    iceberg's display quantity (the last two appended with defaults: old frames decode)."""

    request_id: int
    symbol: str
    order_id: int = 0
    orig_client_order_id: str = ""
    price: int = 0
    quantity: int = 0
    client_order_id: str = ""
    stop_price: int = 0
    display_quantity: int = 0


# --- server -> client ------------------------------------------------------------------------


class LogonAck(msgspec.Struct, tag=20, array_like=True, kw_only=True):
    """The session is authenticated as ``account``; the limits that apply to it and every
    tradable instrument (tick, lot, decimals), so clients hard-code nothing."""

    account: int
    name: str
    heartbeat_seconds: float
    max_in_flight: int
    orders_per_second: float
    burst: int
    max_frame_bytes: int
    instruments: list[Instrument]
    last_report_seq: int = 0
    """The account's last report number now: a resume sends the reports up to it, and
    every live report is numbered above it."""
    kind: int = 0
    cancel_on_disconnect: bool = False
    max_client_order_id_bytes: int = 64


class LogonReject(msgspec.Struct, tag=21, array_like=True, gc=False, frozen=True):
    """Logon refused (``RejectReason`` code and text); the server closes the connection."""

    reason: int
    text: str


class Error(msgspec.Struct, tag=29, array_like=True, gc=False, frozen=True):
    """A frame-level error (:class:`ErrorCode`). The offending frame changed nothing."""

    code: int
    text: str


class OrderAccepted(msgspec.Struct, tag=40, array_like=True, gc=False):
    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int


class OrderRejected(msgspec.Struct, tag=41, array_like=True, gc=False):
    """``reason`` is a :class:`~tickline.matching.RejectReason`; ``order_id`` is the target of a
    rejected cancel/replace (0 for a new order). Gateway rejects (rate limit, in-flight limit,
    busy) have ``exec_seq`` 0: they never reached the exchange."""

    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    reason: int
    text: str


class Fill(msgspec.Struct, tag=42, array_like=True, gc=False):
    """One execution: ``last_price``/``last_quantity`` traded, ``leaves`` open after it."""

    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    last_price: int
    last_quantity: int
    trade_id: int
    cum_quantity: int = 0
    cum_notional: int = 0

    @property
    def avg_price(self) -> Fraction | None:
        """Exact average fill price in ticks (None before the first fill)."""
        return Fraction(self.cum_notional, self.cum_quantity) if self.cum_quantity else None


class OrderCancelled(msgspec.Struct, tag=43, array_like=True, gc=False):
    """``reason`` is a :class:`~tickline.matching.CancelReason`."""

    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    reason: int
    cum_quantity: int = 0
    cum_notional: int = 0

    @property
    def avg_price(self) -> Fraction | None:
        """Exact average fill price in ticks (None before the first fill)."""
        return Fraction(self.cum_notional, self.cum_quantity) if self.cum_quantity else None


class OrderReplaced(msgspec.Struct, tag=44, array_like=True, gc=False):
    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    cum_quantity: int = 0
    cum_notional: int = 0

    @property
    def avg_price(self) -> Fraction | None:
        """Exact average fill price in ticks (None before the first fill)."""
        return Fraction(self.cum_notional, self.cum_quantity) if self.cum_quantity else None


class OrderExpired(msgspec.Struct, tag=45, array_like=True, gc=False):
    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    cum_quantity: int = 0
    cum_notional: int = 0

    @property
    def avg_price(self) -> Fraction | None:
        """Exact average fill price in ticks (None before the first fill)."""
        return Fraction(self.cum_notional, self.cum_quantity) if self.cum_quantity else None


class OrderTriggered(msgspec.Struct, tag=46, array_like=True, gc=False):
    """An armed stop was triggered (the last trade price touched ``stop_price``): it enters
    the book now, with time priority from this moment, as a market order (``price`` 0) or a
    limit order at ``price``; ``leaves`` is its open quantity. Its fills on entry follow."""

    exec_seq: int
    ts: int
    order_id: int
    client_order_id: str
    symbol: str
    side: int
    price: int
    quantity: int
    leaves: int
    stop_price: int


Report = (OrderAccepted | OrderRejected | Fill | OrderCancelled | OrderReplaced | OrderExpired
          | OrderTriggered)
"""An execution report for the session's account."""


class Response(msgspec.Struct, tag=30, array_like=True, gc=False):
    """The answer to one request: every report it caused for this account, in engine order.
    The first report is the outcome (accepted / rejected / cancelled / replaced); fills of
    the request's own order follow."""

    request_id: int
    reports: list[Report]


class OrderStatusResponse(msgspec.Struct, tag=31, array_like=True, gc=False):
    """The state of the order an :class:`OrderStatusRequest` asked for."""

    request_id: int
    order: OrderState


class OpenOrdersResponse(msgspec.Struct, tag=32, array_like=True, gc=False):
    """The account's open orders, by order id."""

    request_id: int
    orders: list[OrderState]


ClientMessage = (Logon | Logout | Heartbeat | TestRequest | NewOrderRequest | CancelRequest
                 | ReplaceRequest | OrderStatusRequest | OpenOrdersRequest | MassCancelRequest)
"""Everything a client may send."""

ServerMessage = (LogonAck | LogonReject | Logout | Heartbeat | TestRequest | Error | Response
                 | OrderStatusResponse | OpenOrdersResponse | OrderAccepted | OrderRejected
                 | Fill | OrderCancelled | OrderReplaced | OrderExpired | OrderTriggered)
"""Everything a server may send."""

_client_decoder: msgspec.msgpack.Decoder[ClientMessage] = msgspec.msgpack.Decoder(ClientMessage)
_server_decoder: msgspec.msgpack.Decoder[ServerMessage] = msgspec.msgpack.Decoder(ServerMessage)
_encode_into = msgspec.msgpack.Encoder().encode_into


def decode_client(payload: bytes | memoryview) -> ClientMessage:
    """Decode one client payload (no header). Raises ``msgspec.DecodeError`` (a
    ``ValueError``) for anything that is not exactly one valid message."""
    return _client_decoder.decode(payload)


def decode_server(payload: bytes | memoryview) -> ServerMessage:
    """Decode one server payload (no header); raises ``msgspec.DecodeError``."""
    return _server_decoder.decode(payload)


def append_frame(msg: msgspec.Struct, out: bytearray) -> None:
    """Append ``msg`` to ``out`` as one frame: the payload is encoded straight into ``out``
    after a reserved length prefix, which is then filled in (no intermediate ``bytes``).

    The one place frames are written: the binary gateway's sessions, the client and
    :func:`encode_frame`/:func:`encode_frames` all call it. One ``encode_into`` and one
    4-byte slice assignment; the encoder is shared (msgspec encoders keep no state between
    calls, so any thread may use it).
    """
    start = len(out)
    _encode_into(msg, out, start + HEADER)
    out[start:start + HEADER] = (len(out) - start - HEADER).to_bytes(HEADER, "big")


def encode_frame(msg: msgspec.Struct) -> bytes:
    """One message as a complete frame (header + payload)."""
    buf = bytearray()
    append_frame(msg, buf)
    return bytes(buf)


def encode_frames(msgs: list[msgspec.Struct], out: bytearray | None = None) -> bytearray:
    """Append each message as a frame to ``out`` (a new buffer if None); return it."""
    buf = out if out is not None else bytearray()
    for msg in msgs:
        append_frame(msg, buf)
    return buf


class FrameError(Exception):
    """The byte stream cannot continue: a length of 0 or above the maximum. ``code`` is the
    :class:`ErrorCode`."""

    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class FrameReader:
    """Incremental splitter of a byte stream into payloads (no decoding).

    ``feed(data)`` returns the complete payloads now available (as ``bytes``) and keeps a
    partial frame for the next call. The announced length is checked as soon as the 4 header
    bytes are in: above ``max_frame`` or 0 raises :class:`FrameError` before the payload is
    buffered, so a peer can make this reader hold at most ``max_frame + 4`` bytes plus one
    ``data`` chunk. Single-threaded.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME_DEFAULT) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def pending(self) -> int:
        """Bytes of an incomplete frame held now."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        max_frame = self.max_frame
        while end - pos >= HEADER:
            n = int.from_bytes(buf[pos:pos + HEADER], "big")
            if n > max_frame or n == 0:
                del buf[:pos]
                if n == 0:
                    raise FrameError(ErrorCode.EMPTY_FRAME, "frame length is 0")
                raise FrameError(ErrorCode.FRAME_TOO_LARGE,
                                 f"frame length {n} exceeds max_frame_bytes {max_frame}")
            stop = pos + HEADER + n
            if stop > end:
                break
            out.append(bytes(buf[pos + HEADER:stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return out
