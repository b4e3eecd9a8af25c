"""The FIX codec's fast paths decide exactly like the general ones: the one-pass
parse-and-validate (:func:`codec.parse_valid`), the framer's fast branch, the C byte sum;
and digits are ASCII digits (``"²".isdigit()`` is true in Python, ``int("²")`` fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.gateway.fix.harness import FixServer
from tickline.gateway.fix import codec

NOW = "20260101-00:00:00"
ENC = codec.Encoder("ALICE", "TICKLINE")


def _slow(raw: bytes) -> codec.FixMessage | None:
    try:
        msg = codec.parse(raw)
        codec.validate(msg)
    except codec.FieldError:
        return None
    return msg


@given(st.binary(max_size=2000))
@example(b"\xff" * 257)
@example(b"\xff" * 512)
def test_byte_sum_is_the_sum_of_the_bytes(data: bytes) -> None:
    assert codec.byte_sum(data) == sum(data)
    assert codec.checksum(bytearray(data)) == sum(data) % 256


COMMON = [
    ("D", [(11, "a1"), (55, "AAPL"), (54, 1), (60, NOW + ".123"), (38, "10"), (40, 2),
           (44, "100.25"), (59, 1)]),
    ("D", [(11, "a2"), (55, "AAPL"), (54, 2), (60, NOW), (38, "10"), (40, 1), (18, "6")]),
    ("F", [(11, "c1"), (41, "a1"), (55, "AAPL"), (54, 1), (60, NOW)]),
    ("G", [(11, "r1"), (41, "a1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "5"), (40, 2),
           (44, "101")]),
    ("0", []),
    ("1", [(112, "T1")]),
    ("H", [(11, "a1"), (55, "AAPL"), (54, 1)]),
]


@pytest.mark.parametrize(("mt", "fields"), COMMON)
def test_common_messages_take_the_fast_path_with_the_same_result(
        mt: str, fields: list[tuple[int, str | int]]) -> None:
    raw = ENC.encode(mt, 7, codec.body(fields), now=NOW.encode())
    fast = codec.parse_valid(raw)
    slow = _slow(raw)
    assert fast is not None and slow is not None
    assert fast.values == slow.values and fast.fields == slow.fields
    assert fast.msg_type == slow.msg_type == mt and fast.raw == raw


TAGS = [1, 10, 11, 18, 34, 35, 38, 40, 41, 43, 44, 49, 52, 54, 55, 56, 58, 59, 60, 97, 99,
        111, 112, 122, 126, 448, 453, 1200, 5000, 9999]
VALUES = st.text(st.sampled_from("0123456789.-YN ABC²¹=:"), min_size=0, max_size=8) | \
    st.sampled_from(["1", "2", "6", "Y", NOW, NOW + ".5", NOW + ".999", "20261301-00:00:00",
                     "1.", ".5", ".", "-1", "1.2.3", "1 6", "²"])


MUTATION = st.tuples(st.sampled_from(["insert", "set", "delete", "duplicate"]),
                     st.integers(0, 20), st.sampled_from(TAGS), VALUES)


@given(st.sampled_from(range(len(COMMON))), st.sampled_from(["D", "F", "G", "0", "8", "Z"]),
       st.booleans(), st.lists(MUTATION, max_size=3))
@settings(max_examples=1500, deadline=None)
def test_the_fast_path_accepts_only_what_the_full_validation_accepts(
        which: int, other_type: str, keep_type: bool,
        mutations: list[tuple[str, int, int, str]]) -> None:
    """Valid messages, a few mutated (fields inserted, changed, deleted, repeated; header
    tags in the body; values malformed): whatever the fast path accepts, the full
    validation accepts with the same values and fields."""
    mt, base = COMMON[which]
    fields: list[tuple[int, str]] = [(t, str(v)) for t, v in base]
    for op, at, tag, value in mutations:
        k = at % (len(fields) + 1)
        if op == "insert":
            fields.insert(k, (tag, value))
        elif fields and op == "set":
            fields[k % len(fields)] = (fields[k % len(fields)][0], value)
        elif fields and op == "delete":
            del fields[k % len(fields)]
        elif fields:
            fields.insert(k, fields[k % len(fields)])
    raw = ENC.encode(mt if keep_type else other_type, 3, b"".join(
        b"%d=%s\x01" % (t, v.encode("latin-1")) for t, v in fields), now=NOW.encode())
    fast = codec.parse_valid(raw)
    if fast is None:
        return  # the session then runs parse and validate
    slow = _slow(raw)
    assert slow is not None, raw
    assert fast.values == slow.values and fast.fields == slow.fields


@given(st.binary(max_size=300), st.integers(0, 300), st.integers(1, 40))
@settings(max_examples=400, deadline=None)
def test_the_framer_fast_branch_changes_nothing(noise: bytes, cut: int, chunk: int) -> None:
    good = ENC.encode("D", 2, codec.body(COMMON[0][1]), now=NOW.encode())
    bad_sum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
    data = good + good[:cut] + noise + bad_sum + good
    fast, slow = codec.FixReader(), codec.FixReader(fast=False)
    a: list[bytes | codec.Garbled] = []
    b: list[bytes | codec.Garbled] = []
    for i in range(0, len(data), chunk):
        a += fast.feed(data[i:i + chunk])
        b += slow.feed(data[i:i + chunk])
    assert [x if isinstance(x, bytes) else x.reason for x in a] == \
        [x if isinstance(x, bytes) else x.reason for x in b]
    assert bytes(fast.buf) == bytes(slow.buf)


def test_superscript_digits_are_not_numbers() -> None:
    with pytest.raises(codec.FieldError) as e:
        codec.parse(ENC.encode("D", 2, "11=x\x01\xb2=5\x01".encode("latin-1")))
    assert e.value.reason == codec.INVALID_TAG
    for tag, value in ((38, "\xb9"), (44, "1.\xb2"), (34, "\xb3")):
        fields = dict(COMMON[0][1]) | {tag: value}
        fields.pop(34, None)
        raw = ENC.encode("D", 2, b"".join(b"%d=%s\x01" % (t, str(v).encode("latin-1"))
                                          for t, v in fields.items()), now=NOW.encode())
        if tag == 34:  # a header field: rewrite it in place, then the length and checksum
            body = raw[raw.index(b"35="):raw.rindex(b"10=")].replace(b"34=2\x01", b"34=\xb3\x01")
            head = b"8=FIX.4.4\x019=%d\x01%s" % (len(body), body)
            raw = head + b"10=%03d\x01" % (sum(head) % 256)
        with pytest.raises(codec.FieldError) as e:
            codec.validate(codec.parse(raw))
        assert (e.value.reason, e.value.tag) == (codec.BAD_FORMAT, tag)
        assert codec.parse_valid(raw) is None


def test_a_superscript_digit_on_a_live_session_gets_a_reject(tmp_path: Path) -> None:
    with FixServer(tmp_path) as srv, srv.client("ALICE") as c:
        c.send("D", [(11, "s1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "\xb9"), (40, 2),
                     (44, "100")])
        reject = c.expect("3")
        assert (reject.get(373), reject.get(371)) == ("6", "38")
        c.send("1", [(112, "still here")])
        assert c.expect("0").get(112) == "still here"


# -- the session rules' common case (codec.routine, codec.sending_time_certain) -------------

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


@given(now_ms=st.integers(0, 86_400_000), offset_ms=st.integers(-300_000, 300_000),
       tolerance=st.sampled_from([0.5, 1.0, 2.0, 30.0, 120.0]))
def test_a_certain_sending_time_is_within_the_tolerance(now_ms: int, offset_ms: int,
                                                        tolerance: float) -> None:
    now = T0 + now_ms / 1000
    value = codec.sending_time(now + offset_ms / 1000).decode()
    if codec.sending_time_certain(value, tolerance, now):
        assert abs(codec.parse_timestamp(value) - now) <= tolerance
    if abs(offset_ms) <= tolerance * 1000 - 2000:  # well inside: the text check is enough
        assert codec.sending_time_certain(value, tolerance, now)


def _header(sender: str = "ALICE", target: str = "TICKLINE", seq: str = "7",
            st_: str = "", extra: str = "", mt: str = "D") -> codec.FixMessage:
    sending = st_ or codec.sending_time(T0 + 10.25).decode()
    body = ("11=c1\x0155=AAPL\x0154=1\x0160=" + sending + "\x0138=1\x0140=2\x0144=1.5\x01"
            "59=1\x01") if mt == "D" else "123=Y\x0136=9\x01"
    payload = (f"35={mt}\x0149={sender}\x0156={target}\x0134={seq}\x01{extra}"
               f"52={sending}\x01{body}")
    head = f"8=FIX.4.4\x019={len(payload.encode())}\x01{payload}".encode()
    msg = codec.parse_valid(head + b"10=%03d\x01" % codec.checksum(head))
    assert msg is not None
    return msg


@pytest.mark.parametrize(("variant", "routine"), [
    ({}, True),
    ({"sender": "BOB"}, False),
    ({"target": "OTHER"}, False),
    ({"seq": "8"}, False),
    ({"seq": "6"}, False),
    ({"seq": "007"}, True),  # the same number: the full rules compare int(34) too
    ({"extra": "43=Y\x01122=20260101-00:00:09\x01"}, False),
    ({"extra": "43=N\x01"}, False),  # legal, but left to the full rules
    ({"st_": "20260101-00:05:00.000"}, False),  # five minutes off
    ({"mt": "4"}, False),  # SequenceReset: its own rules
])
def test_routine_accepts_only_the_plain_expected_message(variant: dict[str, str],
                                                         routine: bool) -> None:
    msg = _header(**variant)
    assert codec.routine(msg, "ALICE", "TICKLINE", 7, 30.0, T0 + 10.5) is routine
