"""tickline.loop: the sequencing rule and the ring item's copy of the command's seq/ts (the
release path reads them from the item: a native field in the compiled build)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from tickline.loop import Inbound, publish_items, release, sequence_run, stamp
from tickline.matching import BUY, Cancel, NewOrder
from tickline.matching.events import Accepted
from tickline.stream.history import ReportHistory
from tickline.stream.reports import ReportBuilder
from tickline.stream.routing import ReportRouter


def _order(account: int = 7) -> NewOrder:
    return NewOrder(account=account, symbol="XCH", side=BUY, quantity=10, price=100)


def test_a_new_item_is_unstamped() -> None:
    item = Inbound(_order(), None, None)
    assert (item.seq, item.ts) == (0, 0)


def test_stamp_gives_the_item_the_commands_own_int_objects() -> None:
    cmd = _order()
    item = Inbound(cmd, None, None)
    ts = stamp(cmd, 5, 1_000, 2_000, item)
    assert (cmd.seq, cmd.ts, ts) == (5, 2_000, 2_000)
    assert item.seq is cmd.seq and item.ts is cmd.ts


def test_stamp_without_an_item_stamps_the_command_only() -> None:
    cmd = _order()
    assert stamp(cmd, 3, 2_000, 2_000) == 2_001  # the clock did not move: one ns past
    assert (cmd.seq, cmd.ts) == (3, 2_001)


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=40))
def test_sequence_run_stamps_items_and_commands_alike(readings: list[int]) -> None:
    items: list[object] = [Inbound(_order(i), None, None) for i in range(len(readings))]
    items.append("not an item")  # a run stops at the first thing that is not a plain item
    clock: Iterator[int] = iter(readings)
    sequenced: list[Inbound] = []
    stop, seq, last = sequence_run(items, 0, 10, 0, lambda: next(clock), sequenced)
    assert stop == len(readings) and seq == 10 + len(readings)
    assert [item.cmd.seq for item in sequenced] == list(range(11, seq + 1))
    stamps = [item.cmd.ts for item in sequenced]
    assert all(a < b for a, b in pairwise(stamps))
    assert last == stamps[-1]
    for item in sequenced:
        assert item.seq is item.cmd.seq and item.ts is item.cmd.ts


def test_release_and_publish_items_take_seq_and_ts_from_the_item() -> None:
    """A sequenced command's reports and market data carry its seq/ts; a stale one (never
    stamped) gets its unnumbered reject only and no market data."""
    done = Inbound(_order(7), None, None)
    stamp(done.cmd, 1, 0, 5_000, done)
    stale = Inbound(Cancel(account=8, symbol="XCH", order_id=99), None, None)
    events = [Accepted(1, 7, "", "XCH", BUY, 1, 1, 100, 10)]
    answered: list[tuple[int, list[object]]] = []
    pending = [(done, events), (stale, [object()])]
    for item, _ in pending:
        item.reply = lambda cmd, evs, own: answered.append((cmd.seq, own))
    assert publish_items(pending, 1) == [(1, 5_000, events)]
    assert publish_items(pending[:1], 0) == [(1, 5_000, events)]
    builder = ReportBuilder()
    release(pending, builder, ReportHistory(), ReportRouter(), lambda cmd, ev: "stale reject")
    (seq1, own1), (seq2, own2) = answered
    assert seq1 == 1 and [(r.seq, r.ts, r.command_seq) for r in own1] == [(1, 5_000, 1)]
    assert seq2 == 0 and own2 == ["stale reject"]
