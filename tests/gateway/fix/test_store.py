"""The FIX session store: what is recorded comes back after a reopen, a torn last record is
ignored, a reset voids the past, compaction keeps the latest messages and the numbers."""

from __future__ import annotations

from pathlib import Path

from tickline.gateway.fix.store import SessionStore


def fill(store: SessionStore, n: int) -> None:
    for seq in range(store.next_out, store.next_out + n):
        if seq % 3 == 0:
            store.sent_admin(seq)
        else:
            store.sent_app(seq, b"8", b"20260101-00:00:00.000", b"37=%d\x01" % seq)
    store.received(store.next_in + n)
    store.delivered(n)
    store.flush()


def test_reopen_gives_back_numbers_messages_and_report_position(tmp_path: Path) -> None:
    s = SessionStore(tmp_path, "T-A")
    fill(s, 10)
    s.close()
    again = SessionStore(tmp_path, "T-A")
    assert (again.next_out, again.next_in, again.last_report) == (11, 11, 10)
    assert sorted(again.sent) == [1, 2, 4, 5, 7, 8, 10]
    assert again.message(5) == (b"8", b"20260101-00:00:00.000", b"37=5\x01")
    assert again.message(6) is None  # an admin message


def test_torn_last_record_is_ignored(tmp_path: Path) -> None:
    s = SessionStore(tmp_path, "T-A")
    fill(s, 4)
    s.close()
    path = tmp_path / "T-A.fixlog"
    path.write_bytes(path.read_bytes() + b"O 5 8 20260101-00:00:00.000 40\n37=5")  # crash
    again = SessionStore(tmp_path, "T-A")
    assert again.next_out == 5 and 5 not in again.sent


def test_reset_voids_everything_but_the_report_position(tmp_path: Path) -> None:
    s = SessionStore(tmp_path, "T-A")
    fill(s, 6)
    s.reset()
    s.flush()
    s.close()
    again = SessionStore(tmp_path, "T-A")
    assert (again.next_out, again.next_in, again.sent, again.last_report) == (1, 1, {}, 6)


def test_compaction_bounds_the_file_and_keeps_the_latest(tmp_path: Path) -> None:
    s = SessionStore(tmp_path, "T-A", max_bytes=4096, keep=20)
    for _ in range(50):
        fill(s, 10)
    size = (tmp_path / "T-A.fixlog").stat().st_size
    assert size < 4096 + 2048
    # 333 application messages were sent; memory holds what the file holds (bounded)
    assert len(s.sent) < 150 and max(s.sent) == 500
    s.close()
    again = SessionStore(tmp_path, "T-A")
    assert (again.next_out, again.next_in) == (501, 501)
    assert sorted(again.sent)[-1] == 500 and len(again.sent) < 150


def test_memory_keeps_a_window_and_older_messages_come_from_the_file(tmp_path: Path) -> None:
    s = SessionStore(tmp_path, "T-A", window=10)
    fill(s, 60)  # 40 application messages: 1, 2, 4, 5, ... 59
    assert len(s.sent) == 10 and min(s.sent) == 46 and max(s.sent) == 59
    assert all(type(v) is bytes for v in s.sent.values())  # atoms: untracked by the gc
    got = s.stored(1, 60)
    assert sorted(got) == [q for q in range(1, 61) if q % 3]
    assert got[4] == (b"8", b"20260101-00:00:00.000", b"37=4\x01")
    assert s.message(58) == (b"8", b"20260101-00:00:00.000", b"37=58\x01")
    s.close()
    again = SessionStore(tmp_path, "T-A", window=10)  # reopened: the window again
    assert sorted(again.sent) == sorted(s.sent) and again.message(1) is not None


def test_without_a_directory_what_left_the_window_is_gone(tmp_path: Path) -> None:
    s = SessionStore(None, "T-A", window=5)
    fill(s, 30)
    assert len(s.sent) == 5
    assert sorted(s.stored(1, 30)) == [22, 23, 25, 26, 28, 29][-5:]
    assert s.message(1) is None  # a resend gap-fills it
