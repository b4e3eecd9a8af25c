"""The binary wire format: framing, typed decoding, and property-based fuzzing of the decoder
and the frame splitter (no sockets)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.gateway import protocol as p
from tickline.matching import Instrument

CLIENT_SAMPLES: list[msgspec.Struct] = [
    p.Logon("alice-key", "test"),
    p.Logout("bye"),
    p.Heartbeat(7),
    p.TestRequest(9),
    p.NewOrderRequest(request_id=1, symbol="AAPL", side=1, quantity=10, price=10125,
                      client_order_id="c1"),
    p.CancelRequest(request_id=2, symbol="AAPL", order_id=5),
    p.ReplaceRequest(request_id=3, symbol="AAPL", order_id=5, price=10130, quantity=4),
]

SERVER_SAMPLES: list[msgspec.Struct] = [
    p.LogonAck(account=2, name="alice", heartbeat_seconds=10.0, max_in_flight=10,
               orders_per_second=5.0, burst=3, max_frame_bytes=4096,
               instruments=[Instrument(symbol="AAPL")]),
    p.LogonReject(401, "unknown account key"),
    p.Error(1, "malformed"),
    p.Response(4, [p.OrderAccepted(1, 2, 3, "c", "AAPL", 1, 100, 5, 5),
                   p.Fill(2, 2, 3, "c", "AAPL", 1, 100, 5, 0, 100, 5, 9)]),
    p.OrderCancelled(3, 4, 5, "", "AAPL", 2, 100, 5, 1),
    p.OrderReplaced(3, 4, 5, "", "AAPL", 2, 100, 5, 2),
    p.OrderExpired(3, 4, 5, "", "AAPL", 2, 100, 5),
    p.OrderRejected(0, 0, 0, "x", "AAPL", 402, "rate limited"),
]


@pytest.mark.parametrize("msg", CLIENT_SAMPLES, ids=lambda m: type(m).__name__)
def test_client_messages_round_trip(msg: msgspec.Struct) -> None:
    frame = p.encode_frame(msg)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert p.decode_client(frame[4:]) == msg


@pytest.mark.parametrize("msg", SERVER_SAMPLES, ids=lambda m: type(m).__name__)
def test_server_messages_round_trip(msg: msgspec.Struct) -> None:
    assert p.decode_server(p.encode_frame(msg)[4:]) == msg


def test_encode_frames_appends_consecutive_frames() -> None:
    buf = p.encode_frames(CLIENT_SAMPLES)
    assert p.FrameReader(1 << 16).feed(bytes(buf)) == [p.encode_frame(m)[4:]
                                                       for m in CLIENT_SAMPLES]


def test_append_frame_writes_after_what_the_buffer_holds() -> None:
    """The one frame writer: each frame goes after the bytes already there, with its own
    big-endian length prefix, and equals :func:`encode_frame` of the message."""
    out = bytearray(b"xyz")
    for msg in SERVER_SAMPLES:
        p.append_frame(msg, out)
    assert out[:3] == b"xyz"
    frames = [p.encode_frame(m) for m in SERVER_SAMPLES]
    assert bytes(out[3:]) == b"".join(frames)
    payloads = p.FrameReader(1 << 16).feed(bytes(out[3:]))
    assert [p.decode_server(x) for x in payloads] == SERVER_SAMPLES
    assert all(int.from_bytes(f[:4], "big") == len(f) - 4 for f in frames)


def test_server_messages_do_not_decode_as_client_messages() -> None:
    with pytest.raises(msgspec.ValidationError):
        p.decode_client(p.encode_frame(p.Error(1, "x"))[4:])


def test_wrong_field_type_is_a_typed_decode_error() -> None:
    payload = msgspec.msgpack.encode([10, 1, "AAPL", 1, "ten", 100])
    with pytest.raises(msgspec.ValidationError, match="Expected `int`, got `str`"):
        p.decode_client(payload)


def test_reader_checks_the_length_before_buffering_the_payload() -> None:
    reader = p.FrameReader(64)
    with pytest.raises(p.FrameError) as err:
        reader.feed((65).to_bytes(4, "big") + b"x")
    assert err.value.code is p.ErrorCode.FRAME_TOO_LARGE
    assert "65 exceeds max_frame_bytes 64" in err.value.text
    with pytest.raises(p.FrameError) as err:
        p.FrameReader(64).feed(b"\x00\x00\x00\x00")
    assert err.value.code is p.ErrorCode.EMPTY_FRAME


def test_reader_holds_a_partial_frame_until_complete() -> None:
    frame = p.encode_frame(CLIENT_SAMPLES[4])
    reader = p.FrameReader()
    assert reader.feed(frame[:2]) == []
    assert reader.feed(frame[2:7]) == []
    assert reader.pending() == 7
    assert reader.feed(frame[7:] + frame[:3]) == [frame[4:]]
    assert reader.pending() == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_decoder_never_raises_anything_but_a_decode_error(data: bytes) -> None:
    try:
        msg = p.decode_client(data)
    except msgspec.DecodeError:
        return
    assert isinstance(msg, (p.Logon, p.Logout, p.Heartbeat, p.TestRequest, p.NewOrderRequest,
                            p.CancelRequest, p.ReplaceRequest))


_any_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.lists(_any_value, max_size=12))
def test_fuzz_decoder_with_valid_msgpack_of_wrong_shapes(tag: int, fields: list[object]) -> None:
    """Well-formed MessagePack arrays with a (maybe valid) tag and random fields: either a
    fully typed message or a ValidationError, never a crash or an untyped value."""
    payload = msgspec.msgpack.encode([tag, *fields])
    try:
        msg = p.decode_client(payload)
    except msgspec.DecodeError:
        return
    assert type(msg).__struct_config__.tag == tag  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CLIENT_SAMPLES), min_size=1, max_size=20),
       st.lists(st.integers(1, 40), min_size=1, max_size=40))
def test_fuzz_reader_reassembles_any_chunking(msgs: list[msgspec.Struct],
                                               cuts: list[int]) -> None:
    stream = bytes(p.encode_frames(msgs))
    reader = p.FrameReader(4096)
    out: list[bytes] = []
    pos = 0
    for cut in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        if pos >= len(stream):
            break
        out.extend(reader.feed(stream[pos:pos + cut]))
        pos += cut
    out.extend(reader.feed(stream[pos:]))
    assert [p.decode_client(x) for x in out] == msgs
    assert reader.pending() == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_fuzz_reader_never_buffers_more_than_one_frame(data: bytes) -> None:
    reader = p.FrameReader(64)
    try:
        frames = reader.feed(data)
    except p.FrameError as e:
        assert e.code in (p.ErrorCode.FRAME_TOO_LARGE, p.ErrorCode.EMPTY_FRAME)
        return
    assert all(1 <= len(f) <= 64 for f in frames)
    assert reader.pending() < 4 + 64
