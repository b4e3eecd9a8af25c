"""FIX sessions across a server restart (sequence numbers and missed reports from the store
and the journal), and hypothesis fuzzing of the parser and of a live session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.gateway.fix.harness import KEYS, FixServer
from tickline.gateway.fix import codec
from tickline.gateway.fix.client import FixClient

NOW = "20260101-00:00:00"


def test_seqnums_and_missed_reports_survive_a_server_restart(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    with FixServer(journal) as srv:
        with srv.client("ALICE") as alice:
            alice.send("D", [(11, "r1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "5"),
                             (40, 2), (44, "50.00")])
            ack = alice.expect("8")
            alice.send("5", [])
            last_out = int(alice.expect("5").get(34))
            next_in = alice.seq
        with srv.client("BOB") as bob:  # fills alice's order while she is away
            bob.send("D", [(11, "b1"), (55, "AAPL"), (54, 2), (60, NOW), (38, "5"), (40, 1)])
            assert bob.expect("8").get(150) == "0"
            assert bob.expect("8").get(150) == "F"
    with FixServer(journal) as srv, FixClient("127.0.0.1", srv.fix_port, "ALICE") as alice:
        alice.seq = next_in
        answer = alice.logon(KEYS["ALICE"], reset=False)
        assert answer.msg_type == "A" and int(answer.get(34)) == last_out + 1
        fill = alice.expect("8")  # the fill she missed, rebuilt from the journal
        assert (fill.get(150), fill.get(39), fill.get(37), fill.get(11)) == (
            "F", "2", ack.get(37), "r1")
        assert int(fill.get(34)) == last_out + 2
        # and the stored messages of before the restart can still be resent
        alice.send("2", [(7, 2), (16, 2)])
        resent = alice.expect("8")
        assert (resent.get(43), resent.get(17)) == ("Y", ack.get(17))


# -- parser fuzzing ----------------------------------------------------------------------------

VALID = codec.Encoder("ALICE", "TICKLINE").encode("D", 2, codec.body(
    [(11, "f1"), (55, "AAPL"), (54, 1), (60, NOW), (38, "10"), (40, 2), (44, "100.25")]))


@given(st.binary(max_size=400), st.integers(0, 400))
@example(noise=b"8=FIX", cut=104)  # a cut-off message, then "8=FIX" glued to the next one
@settings(max_examples=400, deadline=None)
def test_reader_parser_and_validator_never_crash(noise: bytes, cut: int) -> None:
    """Any bytes: the framer yields messages or Garbled; each message parses or raises
    FieldError; validation raises only FieldError."""
    data = VALID[:cut] + noise + VALID
    reader = codec.FixReader()
    items = reader.feed(data[: len(data) // 2]) + reader.feed(data[len(data) // 2:])
    assert any(item == VALID for item in items)  # the good message after the noise survives
    for item in items:
        if isinstance(item, codec.Garbled):
            continue
        try:
            codec.validate(codec.parse(item))
        except codec.FieldError as e:
            assert 0 <= e.reason <= 99


@given(st.lists(st.tuples(st.integers(1, 1200), st.text(
    st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=8)),
    max_size=12))
@settings(max_examples=300, deadline=None)
def test_any_checksummed_message_is_accepted_or_gets_a_typed_reject(
        fields: list[tuple[int, str]]) -> None:
    raw = codec.Encoder("ALICE", "TICKLINE").encode("D", 2, b"".join(
        b"%d=%s\x01" % (t, v.replace("=", "").encode()) for t, v in fields))
    (item,) = codec.FixReader().feed(raw)
    assert isinstance(item, bytes)
    try:
        codec.validate(codec.parse(item))
    except codec.FieldError as e:
        assert e.reason in (0, 1, 2, 3, 4, 5, 6, 13, 14, 16)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixServer]:
    with FixServer(tmp_path_factory.mktemp("fuzz")) as server:
        yield server


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_on_a_live_session_changes_nothing(live: FixServer, noise: bytes) -> None:
    """Random bytes mixed into a logged-on session: no crash, the book unchanged, and the
    session either still answers in sequence or was closed by the acceptor."""
    before = live.digest()
    with live.client("ALICE") as c:
        c.send_raw(noise.replace(b"8=FIX", b"8=FIY"))
        c.send("1", [(112, "after")])
        while True:
            msg = c.recv(2.0)
            if msg is None or (msg.msg_type == "0" and msg.get(112) == "after"):
                break
            assert msg.msg_type in ("0", "3", "5"), msg
        c.send("5", [])
    assert live.digest() == before
