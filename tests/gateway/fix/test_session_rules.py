"""The FIX session rules over a real socket, one rule per test, against a real server (the
QuickFIX FIX 4.4 acceptance definitions each test follows are named in its docstring; the
checklist is in docs/fix.md)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.fix.harness import KEYS, FixServer
from tickline.gateway.fix import codec
from tickline.gateway.fix.client import FixClient

NOW = "20260101-00:00:00"
ORDER = [(11, "o1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "10"), (40, 2), (44, "100.25")]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixServer]:
    with FixServer(tmp_path_factory.mktemp("fix")) as server:
        yield server


def alive(c: FixClient, test_id: str = "ping") -> None:
    """The session is up and in sequence: a TestRequest gets its Heartbeat."""
    c.send("1", [(112, test_id)])
    hb = c.expect("0")
    assert hb.get(112) == test_id


def rejected(c: FixClient, reason: int, tag: int | None = None) -> codec.FixMessage:
    rej = c.expect("3")
    assert rej.get(373) == str(reason), rej
    if tag is not None:
        assert rej.get(371) == str(tag), rej
    return rej


# -- logon (1a-1e) ---------------------------------------------------------------------------

def test_valid_logon_answers_logon_with_heartbeat_and_reset(srv: FixServer) -> None:
    """1a: a valid Logon is answered with Logon (108 echoed, 141=Y when asked)."""
    with FixClient("127.0.0.1", srv.fix_port, "ALICE") as c:
        answer = c.logon(KEYS["ALICE"], heartbeat=17)
        assert (answer.msg_type, answer.get(108), answer.get(141), answer.get(34)) == (
            "A", "17", "Y", "1")
        alive(c)


@pytest.mark.parametrize(("sender", "password", "target"), [
    ("ALICE", "wrong-password", "TICKLINE"),
    ("NOBODY", "alice-key", "TICKLINE"),
    ("ALICE", "alice-key", "SOMEONE-ELSE"),
])
def test_logon_with_bad_credentials_gets_logout_and_disconnect(
        srv: FixServer, sender: str, password: str, target: str) -> None:
    """1c (invalid CompIDs) and credentials: Logout with the reason, then disconnect."""
    with FixClient("127.0.0.1", srv.fix_port, sender, target) as c:
        answer = c.logon(password)
        assert answer.msg_type == "5" and answer.get(58), answer
        assert c.closed_by_peer()


def test_second_logon_of_a_logged_on_session_is_refused(srv: FixServer) -> None:
    """1b: duplicate identity: the second connection is refused, the first one stays."""
    with srv.client("BOB") as first, FixClient("127.0.0.1", srv.fix_port, "BOB") as second:
        answer = second.logon(KEYS["BOB"])
        assert answer.msg_type == "5" and "already logged on" in answer.get(58)
        assert second.closed_by_peer()
        alive(first)


def test_a_message_before_logon_closes_the_connection(srv: FixServer) -> None:
    """1e: the first message is not a Logon: disconnect, nothing done."""
    before = srv.digest()
    with FixClient("127.0.0.1", srv.fix_port, "ALICE") as c:
        c.send("D", ORDER)
        assert c.closed_by_peer()
        assert c.received == []
    assert srv.digest() == before


def test_logon_with_seqnum_too_low_is_logged_out(srv: FixServer) -> None:
    """1d/2c at logon: a Logon below the expected MsgSeqNum: Logout, disconnect."""
    with srv.client("ALICE") as c:
        alive(c)
        c.send("5", [])
        c.expect("5")
    with FixClient("127.0.0.1", srv.fix_port, "ALICE") as c:
        c.seq = 1  # the acceptor expects 3 now
        answer = c.logon(KEYS["ALICE"], reset=False)
        assert answer.msg_type == "5" and "too low" in answer.get(58)
        assert c.closed_by_peer()


# -- header and sequence checks (2a-2t) -------------------------------------------------------

def test_seqnum_too_high_gets_resend_request_then_the_resent_message_is_processed(
        srv: FixServer) -> None:
    """2b, 8, 11a: a gap -> ResendRequest from the expected number; the peer's resend with
    PossDupFlag fills it (the too-high message was not processed)."""
    with srv.client("ALICE") as c:
        c.send("1", [(112, "gap")], seq=5)  # expected 2
        rr = c.expect("2")
        assert (rr.get(7), rr.get(16)) == ("2", "0")
        # fill 2..4 with a gap fill, resend 5
        c.send("4", [(123, "Y"), (36, 5)], seq=2, poss_dup=codec.sending_time())
        c.send("1", [(112, "gap")], seq=5, poss_dup=codec.sending_time())
        assert c.expect("0").get(112) == "gap"
        c.seq = 6
        alive(c)


def test_seqnum_too_low_without_possdup_is_logged_out(srv: FixServer) -> None:
    """2c: MsgSeqNum too low, no PossDupFlag: Logout with the reason, disconnect."""
    with srv.client("ALICE") as c:
        alive(c)
        c.send("1", [(112, "old")], seq=1)
        logout = c.expect("5")
        assert "too low" in logout.get(58)
        assert c.closed_by_peer()


def test_possdup_duplicate_is_ignored(srv: FixServer) -> None:
    """2e: a PossDup message already received is ignored (no reject, no second order)."""
    with srv.client("ALICE") as c:
        raw = c.send("D", [*ORDER[:1], (11, "dup1"), *ORDER[1:]][1:])
        ack = c.expect("8")
        assert ack.get(150) == "0"
        before = srv.digest()
        c.send("D", [(11, "dup1"), *ORDER[1:]], seq=2, poss_dup=raw.split(b"\x0152=")[1][:21])
        alive(c)
        assert srv.digest() == before
        c.send("F", [(11, "dup1-x"), (41, "dup1"), (55, "AAPL"), (54, 1), (60, NOW)])
        assert c.expect("8").get(150) == "4"


def test_possdup_without_orig_sending_time_is_rejected(srv: FixServer) -> None:
    """2g: PossDupFlag=Y without OrigSendingTime: Reject 373=1 (RefTagID 122)."""
    with srv.client("ALICE") as c:
        data = c.encode("1", [(112, "x")])
        c.send_raw(data.replace(b"\x0152=", b"\x0143=Y\x0152=").replace(
            b"9=%d" % _body_len(data), b"9=%d" % (_body_len(data) + 5)).rsplit(b"10=", 1)[0]
            + b"10=%03d\x01" % codec.checksum(data.replace(b"\x0152=", b"\x0143=Y\x0152=")
                                               .replace(b"9=%d" % _body_len(data),
                                                        b"9=%d" % (_body_len(data) + 5))
                                               .rsplit(b"10=", 1)[0]))
        rejected(c, 1, 122)
        alive(c)


def _body_len(data: bytes) -> int:
    return int(data.split(b"\x01")[1][2:])


def test_compid_mismatch_is_rejected_and_logged_out(srv: FixServer) -> None:
    """2k: wrong SenderCompID after logon: Reject 373=9, Logout, disconnect."""
    with srv.client("ALICE") as c:
        c.encoder = codec.Encoder("MALLORY", "TICKLINE")
        c.send("1", [(112, "x")])
        rejected(c, 9)
        c.expect("5")
        assert c.closed_by_peer()


def test_wrong_body_length_and_bad_checksum_are_ignored(srv: FixServer) -> None:
    """2m and 3b: a wrong BodyLength or CheckSum: the message is ignored, its MsgSeqNum
    not consumed (the same number, sent right, is then processed)."""
    with srv.client("ALICE") as c:
        good = c.encode("1", [(112, "t1")])
        bad_sum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
        c.send_raw(bad_sum)
        bad_len = good.replace(b"\x019=", b"\x019=1", 1)  # BodyLength 10x too long
        c.send_raw(bad_len[:-7] + b"10=%03d\x01" % codec.checksum(bad_len[:-7]))
        c.send_raw(good)
        assert c.expect("0").get(112) == "t1"
        assert srv.stats()["garbled"] >= 2
        alive(c)


def test_garbled_bytes_are_ignored(srv: FixServer) -> None:
    """2d/3c: bytes that are no message are dropped; the session goes on."""
    with srv.client("ALICE") as c:
        c.send_raw(b"hello\x01garbage=1\x018=FIX.4.4\x019=zz\x01")
        alive(c)


def test_sending_time_out_of_range_is_rejected_and_logged_out(srv: FixServer) -> None:
    """2o: SendingTime far from now: Reject 373=10, Logout."""
    with srv.client("ALICE") as c:
        c.send("1", [(112, "x")], sending_time=b"20000101-00:00:00.000")
        rejected(c, 10, 52)
        c.expect("5")
        assert c.closed_by_peer()


def test_invalid_msg_type_is_rejected_and_unsupported_one_business_rejected(
        srv: FixServer) -> None:
    """2q: an invalid MsgType: Reject 373=11; 2r: a valid but unsupported one (QuoteRequest
    R): BusinessMessageReject 380=3."""
    with srv.client("ALICE") as c:
        c.send("ZZ", [(112, "x")])
        rejected(c, 11, 35)
        c.send("R", [(131, "q1"), (146, 1), (55, "AAPL")])
        bmr = c.expect("j")
        assert (bmr.get(380), bmr.get(372)) == ("3", "R")
        alive(c)


def test_first_three_fields_out_of_order_is_garbled(srv: FixServer) -> None:
    """2t: BeginString, BodyLength, MsgType not first: ignored, MsgSeqNum not consumed (the
    same number is then accepted)."""
    with srv.client("ALICE") as c:
        good = c.encode("0", [], seq=c.seq)
        head, rest = good.split(b"\x0135=0\x01", 1)
        swapped = b"35=0\x01" + head + b"\x01" + rest  # 35 first
        c.send_raw(swapped[:-7] + b"10=%03d\x01" % codec.checksum(swapped[:-7]))
        no_type = good.replace(b"\x0135=0\x01", b"\x01", 1)  # 34 third
        c.send_raw(no_type[:-7] + b"10=%03d\x01" % codec.checksum(no_type[:-7]))
        alive(c)  # MsgSeqNum c.seq was not consumed by the broken ones
        assert all(m.msg_type != "3" for m in c.received)


def test_tag_without_value_is_rejected_with_its_msg_type(srv: FixServer) -> None:
    """14d: a tag without a value: Reject 373=4, RefTagID and RefMsgType set."""
    with srv.client("ALICE") as c:
        raw = c.encode("0", [])
        broken = raw[:-7] + b"112=\x01"
        broken = broken.replace(b"9=%d" % _body_len(raw), b"9=%d" % (_body_len(raw) + 5), 1)
        c.send_raw(broken + b"10=%03d\x01" % codec.checksum(broken))
        rej = rejected(c, 4, 112)
        assert rej.get(372) == "0"
        alive(c)


# -- heartbeats (4a, 4b, 6) ------------------------------------------------------------------

def test_test_request_is_answered_and_silence_gets_heartbeat_then_test_request(
        srv: FixServer) -> None:
    """4a, 4b, 6: Heartbeat after HeartBtInt of silence, TestRequest when the peer is
    silent past it."""
    with srv.client("ALICE", heartbeat=1) as c:
        alive(c, "hello")
        first = c.recv(3.0)
        assert first is not None and first.msg_type in ("0", "1")
        deadline = time.monotonic() + 5
        while first is None or first.msg_type != "1":
            assert time.monotonic() < deadline
            first = c.recv(3.0)
        assert first.get(112)
        c.send("0", [(112, first.get(112))])
        alive(c)


# -- resend (8), reject handling (7), sequence reset (10, 11) ----------------------------------

def test_resend_request_resends_app_messages_with_possdup_and_gap_fills_admin(
        srv: FixServer) -> None:
    """8: application messages resent with PossDupFlag=Y and OrigSendingTime; admin ones
    gap-filled (SequenceReset 123=Y)."""
    with srv.client("ALICE") as c:
        c.send("D", [(11, "rs1"), *ORDER[1:]])
        ack = c.expect("8")
        alive(c)
        c.send("F", [(11, "rs1-x"), (41, "rs1"), (55, "AAPL"), (54, 1), (60, NOW)])
        c.expect("8")
        c.send("2", [(7, 1), (16, 0)])
        gap = c.expect("4")
        assert (gap.get(34), gap.get(123), gap.get(36), gap.get(43)) == ("1", "Y", "2", "Y")
        resent = c.expect("8")
        assert (resent.get(34), resent.get(43), resent.get(17)) == ("2", "Y", ack.get(17))
        assert resent.get(122) == ack.get(52)
        assert c.expect("4").get(36) == "4"  # the heartbeat (3) gap-filled
        assert c.expect("8").get(150) == "4"


def test_received_reject_is_accepted(srv: FixServer) -> None:
    """7: a Reject from the peer consumes its number and changes nothing."""
    with srv.client("ALICE") as c:
        c.send("3", [(45, 1), (58, "peer says no")])
        alive(c)


def test_sequence_reset_reset_and_gap_fill(srv: FixServer) -> None:
    """10, 11a-11c: SequenceReset-Reset moves the expected number up; one below it gets
    Reject 373=5; GapFill in sequence moves it."""
    with srv.client("ALICE") as c:
        c.send("4", [(36, 20)])
        c.seq = 20
        alive(c)
        c.send("4", [(36, 3)], seq=99)  # Reset ignores MsgSeqNum: NewSeqNo below expected
        rejected(c, 5, 36)
        c.send("4", [(123, "Y"), (36, 30)])
        c.seq = 30
        alive(c)


# -- logout (13b) ----------------------------------------------------------------------------

def test_logout_is_answered_and_disconnected(srv: FixServer) -> None:
    """13b: an unsolicited Logout gets a Logout, then the connection closes."""
    with srv.client("ALICE") as c:
        c.send("5", [])
        c.expect("5")
        assert c.closed_by_peer()


# -- field validation (14a-14i), 15, 21 --------------------------------------------------------

@pytest.mark.parametrize(("fields", "reason", "tag"), [
    ([(112, "x"), (4999, "1")], 0, 4999),            # 14a undefined tag
    ([], 1, 112),                                    # 14b required field missing
    ([(112, "x"), (55, "AAPL")], 2, 55),             # 14c tag not defined for this MsgType
    ([(112, "x"), (112, "y")], 13, 112),             # 14h repeated tag
])
def test_field_problems_get_reject_and_consume_the_seqnum(
        srv: FixServer, fields: list[tuple[int, str]], reason: int, tag: int) -> None:
    with srv.client("ALICE") as c:
        c.send("1", fields)
        rejected(c, reason, tag)
        alive(c)


@pytest.mark.parametrize(("fields", "reason", "tag"), [
    ([(11, "v1"), (55, "AAPL"), (54, "Q"), (60, NOW), (38, "1"), (40, 2), (44, "1")], 5, 54),
    ([(11, "v2"), (55, "AAPL"), (54, 1), (60, "yesterday"), (38, "1"), (40, 2)], 6, 60),
    ([(11, "v3"), (55, "AAPL"), (54, 1), (60, NOW), (38, "1x"), (40, 2)], 6, 38),
    ([(11, "v4"), (55, "AAPL"), (54, 1), (60, NOW), (38, "1"), (40, 2), (453, 2), (448, "p"),
      (447, "D")], 16, 453),                                                     # 14i
])
def test_bad_values_in_orders_get_reject_and_change_nothing(
        srv: FixServer, fields: list[tuple[int, str]], reason: int, tag: int) -> None:
    """14e incorrect enum, 14f data format, 14i group count: Reject, the book unchanged."""
    before = srv.digest()
    with srv.client("ALICE") as c:
        c.send("D", fields)
        rejected(c, reason, tag)
        alive(c)
    assert srv.digest() == before


def test_header_field_after_body_is_rejected(srv: FixServer) -> None:
    """14g: a header tag after a body tag: Reject 373=14."""
    with srv.client("ALICE") as c:
        c.send("1", [(112, "x"), (50, "SUB")])
        rejected(c, 14, 50)
        alive(c)


def test_repeating_group_with_count_zero_is_accepted(srv: FixServer) -> None:
    """21: NumInGroup 0 is valid."""
    with srv.client("ALICE") as c:
        c.send("D", [(11, "g0"), (55, "AAPL"), (54, 1), (60, NOW), (38, "1"), (40, 2),
                     (44, "1.00"), (453, 0)])
        assert c.expect("8").get(150) == "0"
        c.send("F", [(11, "g0-x"), (41, "g0"), (55, "AAPL"), (54, 1), (60, NOW)])
        assert c.expect("8").get(150) == "4"


# -- application: prices exact, typed rejects ------------------------------------------------

@pytest.mark.parametrize("price", ["100.255", "-1", "1e3"])
def test_price_not_exact_in_ticks_is_refused_never_rounded(srv: FixServer,
                                                           price: str) -> None:
    before = srv.digest()
    with srv.client("ALICE") as c:
        c.send("D", [(11, f"px{price}"), (55, "AAPL"), (54, 1), (60, NOW), (38, "1"),
                     (40, 2), (44, price)])
        msg = c.expect("8", "3")
        if msg.msg_type == "8":  # a number FIX accepts but tickline cannot take exactly
            assert (msg.get(150), msg.get(39)) == ("8", "8")
    assert srv.digest() == before


def test_off_tick_price_rejected_by_the_engine(srv: FixServer) -> None:
    """BTC-USD has tick 50 (0.50): 100.25 is in range of the decimals but off tick."""
    with srv.client("ALICE") as c:
        c.send("D", [(11, "tick1"), (55, "BTC-USD"), (54, 1), (60, NOW), (38, "1"),
                     (40, 2), (44, "100.25")])
        rej = c.expect("8")
        assert (rej.get(150), rej.get(39)) == ("8", "8")
        assert "OFF_TICK" in rej.get(58) or "tick" in rej.get(58)


def test_unknown_order_cancel_gets_cancel_reject(srv: FixServer) -> None:
    with srv.client("ALICE") as c:
        c.send("F", [(11, "nx"), (41, "never-sent"), (55, "AAPL"), (54, 1), (60, NOW)])
        cr = c.expect("9")
        assert (cr.get(434), cr.get(102), cr.get(41)) == ("1", "1", "never-sent")


def test_cancel_on_disconnect_cancels_the_sessions_orders(srv: FixServer) -> None:
    """DEMO is configured with cancel_on_disconnect: its resting order goes when it drops."""
    with srv.client("DEMO") as c:
        before = srv.digest()
        c.send("D", [(11, "cod1"), (55, "MSFT"), (54, 1), (60, NOW), (38, "3"), (40, 2),
                     (44, "10.00")])
        assert c.expect("8").get(150) == "0"
        assert srv.digest() != before
    deadline = time.monotonic() + 5
    while srv.digest() != before:
        assert time.monotonic() < deadline, "the order was not cancelled on disconnect"
        time.sleep(0.02)


def test_store_survives_reconnect_without_reset(srv: FixServer, tmp_path: Path) -> None:
    """Sequence numbers continue across connections (ResetSeqNumFlag not sent)."""
    with srv.client("BOB") as c:
        alive(c)
        next_seq = c.seq
        c.send("5", [])
        last = c.expect("5")
    with FixClient("127.0.0.1", srv.fix_port, "BOB") as c:
        c.seq = next_seq + 1
        answer = c.logon(KEYS["BOB"], reset=False)
        assert answer.msg_type == "A" and int(answer.get(34)) == int(last.get(34)) + 1
        alive(c)


def test_unexpected_begin_string_is_logged_out(srv: FixServer) -> None:
    """2i: BeginString other than FIX.4.4 after logon: Logout, disconnect."""
    with srv.client("ALICE") as c:
        data = c.encode("1", [(112, "x")]).replace(b"8=FIX.4.4", b"8=FIX.4.1", 1)
        c.send_raw(data[:-7] + b"10=%03d\x01" % codec.checksum(data[:-7]))
        logout = c.expect("5")
        assert "BeginString" in logout.get(58)
        assert c.closed_by_peer()


def test_possdup_with_orig_sending_time_after_sending_time_is_rejected(
        srv: FixServer) -> None:
    """2f: OrigSendingTime later than SendingTime: Reject 373=10, Logout."""
    with srv.client("ALICE") as c:
        alive(c)
        c.send("1", [(112, "x")], seq=1, poss_dup=b"29990101-00:00:00.000")
        rejected(c, 10, 122)
        c.expect("5")
        assert c.closed_by_peer()


def test_resend_request_is_answered_while_our_own_is_open(srv: FixServer) -> None:
    """20: a too-high ResendRequest gets our ResendRequest *and* its answer."""
    with srv.client("ALICE") as c:
        c.send("D", [(11, "sim1"), *ORDER[1:]])
        ack = c.expect("8")
        c.send("2", [(7, 2), (16, 2)], seq=10)  # expected 3: too high
        assert c.expect("2").get(7) == "3"
        resent = c.expect("8")
        assert (resent.get(43), resent.get(17)) == ("Y", ack.get(17))


def test_tickline_serve_fix_port_from_the_command_line(tmp_path: Path) -> None:
    """``tickline serve --fix-port 0``: the READY line names the FIX port, a client trades."""
    from tests.served import Served

    srv = Served(tmp_path / "journal", "--fix-port", "0", "--durability", "none")
    try:
        port = int(srv.lines[-1].split("fix_port=")[1])
        with FixClient("127.0.0.1", port, "ALICE") as c:
            assert c.logon(KEYS["ALICE"]).msg_type == "A"
            c.send("D", [(11, "cli1"), *ORDER[1:]])
            assert c.expect("8").get(150) == "0"
    finally:
        assert srv.terminate() == 0


def test_logon_with_seqnum_too_high_is_accepted_then_resend_requested(srv: FixServer) -> None:
    """1a (MsgSeqNumTooHigh): Logon answered, then ResendRequest from the expected number."""
    with FixClient("127.0.0.1", srv.fix_port, "DEMO") as c:
        c.seq = 5
        answer = c.logon(KEYS["DEMO"], reset=True)
        assert answer.msg_type == "A"
        rr = c.expect("2", "8")  # (reports DEMO missed while away may come first)
        while rr.msg_type == "8":
            rr = c.expect("2", "8")
        assert (rr.get(7), rr.get(16)) == ("1", "0")
        c.send("4", [(123, "Y"), (36, 6)], seq=1, poss_dup=codec.sending_time())
        c.send("1", [(112, "after-gap")])
        msg = c.expect("0", "8")
        while msg.msg_type == "8":
            msg = c.expect("0", "8")
        assert msg.get(112) == "after-gap"
