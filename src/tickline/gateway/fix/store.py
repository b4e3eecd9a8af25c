"""Per-session FIX state on disk: sequence numbers, outbound messages for resend, and the
account report number delivered last.

One append-only file per session (``<dir>/<SenderCompID>-<TargetCompID>.fixlog``), records
of one line each (application records followed by their body bytes):

* ``O <seq> <MsgType> <SendingTime> <len>\\n<body>\\n`` an application message sent;
* ``A <seq>\\n``  an admin message sent (resent as SequenceReset-GapFill);
* ``I <seq>\\n``  the next inbound MsgSeqNum expected;
* ``R <n>\\n``    the last account report number delivered (restart/resume, see session);
* ``Z\\n``        a sequence reset: everything before it is void.

Records are buffered and written with one ``write`` per event-loop turn (:meth:`flush`, called
from the session's output flush, *before* the bytes go to the socket: a message is stored
before the peer can see it), and ``fsync``-ed when ``fsync`` is on. Opening a store replays the
file; :meth:`reset` truncates it. The file is compacted when it passes ``max_bytes``: only the
latest ``keep`` application messages are kept (older ones are gap-filled on a resend).

Memory is bounded too: :attr:`SessionStore.sent` holds only the latest ``window`` application
messages (default 10,000), each as **one** ``bytes`` (its file record): an atom
the garbage collector does not track, so a long session's store neither grows the heap nor
adds to what a collection walks. :meth:`stored` serves a resend from memory when the range is
in the window and reads the file for older messages; a store without a directory (no file)
gap-fills what fell out of its window.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["SessionStore"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _unpack(record: bytes) -> tuple[bytes, bytes, bytes]:
    """(MsgType, SendingTime, body) of one ``O`` record."""
    head, body = record.split(b"\n", 1)
    parts = head.split(b" ")
    return parts[2], parts[3], body[:-1]


class SessionStore:
    """The persisted state of one FIX session. ``next_out``/``next_in`` are the next MsgSeqNum
    to send/expect; ``last_report`` the account report number delivered last."""

    def __init__(self, directory: Path | str | None, name: str, *, fsync: bool = False,
                 max_bytes: int = 64 << 20, keep: int = 100_000,
                 window: int = 10_000) -> None:
        if window < 1 or keep < 1:
            raise ValueError(f"window and keep must be >= 1, got {window}, {keep}")
        self.next_out = 1
        self.next_in = 1
        self.last_report = 0
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.keep = keep
        self.window = window
        # seq -> the file record (b"O <seq> <MsgType> <SendingTime> <len>\n<body>\n") of the
        # latest ``window`` application messages
        self.sent: dict[int, bytes] = {}
        self._floor = 1  # no message below this seq is in ``sent``
        self._pending = bytearray()
        self._in_dirty = False  # next_in / last_report changed since the last flush
        self._report_dirty = False
        self._size = 0
        self.path: Path | None = None
        self._fd = -1
        if directory is not None:
            d = Path(directory)
            d.mkdir(parents=True, exist_ok=True)
            self.path = d / f"{_SAFE.sub('_', name)}.fixlog"
            if self.path.exists():
                self._load(self.path.read_bytes())
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size

    def _load(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # a torn last record (crash mid-write): ignored
            parts = data[pos:nl].split(b" ")
            kind = parts[0]
            start = pos
            pos = nl + 1
            try:
                if kind == b"O":
                    seq, size = int(parts[1]), int(parts[4])
                    if pos + size + 1 > n:
                        break
                    pos += size + 1
                    self._keep(seq, data[start:pos])
                    self.next_out = seq + 1
                elif kind == b"A":
                    self.next_out = int(parts[1]) + 1
                elif kind == b"I":
                    self.next_in = int(parts[1])
                elif kind == b"R":
                    self.last_report = int(parts[1])
                elif kind == b"Z":
                    self.sent.clear()
                    self._floor = 1
                    self.next_out = self.next_in = 1
            except (IndexError, ValueError):
                break

    def _keep(self, seq: int, record: bytes) -> None:
        """Put one message in the memory window, dropping the oldest past ``window`` (each
        seq is stepped over once: amortised O(1))."""
        sent = self.sent
        sent[seq] = record
        if len(sent) > self.window:
            floor = self._floor
            while sent.pop(floor, None) is None:
                floor += 1
            self._floor = floor + 1

    # -- reading --------------------------------------------------------------------------

    def message(self, seq: int) -> tuple[bytes, bytes, bytes] | None:
        """(MsgType, SendingTime, body) of application message ``seq`` if it is stored
        (memory or file), else None (an admin message, or one no longer kept)."""
        return self.stored(seq, seq).get(seq)

    def stored(self, begin: int, end: int) -> dict[int, tuple[bytes, bytes, bytes]]:
        """The stored application messages with ``begin <= seq <= end``: from memory when
        the window reaches back to ``begin``, else read from the file (a resend of old
        messages: rare); without a file, what the window has."""
        out: dict[int, tuple[bytes, bytes, bytes]] = {}
        if begin < self._floor and self.path is not None and self._fd >= 0:
            self.flush()
            older = self._read_file(begin, min(end, self._floor - 1))
            for seq in sorted(older):
                out[seq] = older[seq]
        sent = self.sent
        for seq in range(max(begin, self._floor), end + 1):
            record = sent.get(seq)
            if record is not None:
                out[seq] = _unpack(record)
        return out

    def _read_file(self, begin: int, end: int) -> dict[int, tuple[bytes, bytes, bytes]]:
        """The application messages in ``begin..end`` the file holds (after its last reset)."""
        assert self.path is not None
        data = self.path.read_bytes()
        found: dict[int, tuple[bytes, bytes, bytes]] = {}
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            parts = data[pos:nl].split(b" ")
            pos = nl + 1
            if parts[0] == b"O":
                try:
                    seq, size = int(parts[1]), int(parts[4])
                except (IndexError, ValueError):
                    break
                if pos + size + 1 > n:
                    break
                if begin <= seq <= end:
                    found[seq] = (parts[2], parts[3], data[pos:pos + size])
                pos += size + 1
            elif parts[0] == b"Z":
                found.clear()
        return found

    # -- recording ------------------------------------------------------------------------

    def sent_app(self, seq: int, msg_type: bytes, ts: bytes, body: bytes) -> None:
        record = b"O %d %s %s %d\n%s\n" % (seq, msg_type, ts, len(body), body)
        self._keep(seq, record)  # the file's record is the memory's too: one format
        self.next_out = seq + 1
        if self._fd >= 0:
            self._pending += record

    def sent_admin(self, seq: int) -> None:
        self.next_out = seq + 1
        if self._fd >= 0:
            self._pending += b"A %d\n" % seq

    def received(self, next_in: int) -> None:
        """The next inbound MsgSeqNum expected: recorded once per :meth:`flush` (only the
        latest value counts when the file is replayed)."""
        self.next_in = next_in
        self._in_dirty = True

    def delivered(self, report_seq: int) -> None:
        """The latest account report number delivered: recorded once per :meth:`flush`."""
        if report_seq > self.last_report:
            self.last_report = report_seq
            self._report_dirty = True

    def reset(self) -> None:
        """Both sequence numbers back to 1, stored messages dropped (ResetSeqNumFlag)."""
        self.flush()
        self.sent.clear()
        self._floor = 1
        self.next_out = self.next_in = 1
        if self._fd >= 0:
            os.ftruncate(self._fd, 0)
            self._size = 0
            self._pending += b"R %d\n" % self.last_report

    def flush(self) -> None:
        """Write what was recorded since the last flush (one write). The next inbound
        MsgSeqNum goes first (the messages it counts were processed before anything in this
        write was sent), the last report delivered last (after the stored messages that
        delivered it): a write torn by a crash never claims a report was delivered whose
        message is not stored."""
        if self._fd < 0:
            return
        pending = self._pending
        if self._report_dirty:
            self._report_dirty = False
            pending += b"R %d\n" % self.last_report
        if self._in_dirty:
            self._in_dirty = False
            data = b"I %d\n%s" % (self.next_in, pending)
        elif pending:
            data = bytes(pending)
        else:
            return
        pending.clear()
        os.write(self._fd, data)
        if self.fsync:
            os.fsync(self._fd)
        self._size += len(data)
        if self._size > self.max_bytes:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with the state and the latest ``keep`` application messages (read
        back from the file when they reach past the memory window)."""
        assert self.path is not None
        sent = self.sent
        kept: dict[int, tuple[bytes, bytes, bytes]]
        if len(sent) >= self.keep or self._floor <= 1:
            kept = {}
            for seq in sorted(sent)[-self.keep:]:
                kept[seq] = _unpack(sent[seq])
        else:
            everything = self._read_file(1, self.next_out)
            kept = {seq: everything[seq] for seq in sorted(everything)[-self.keep:]}
        for seq in [s for s in sent if s not in kept]:
            del sent[seq]
        if kept:
            self._floor = max(self._floor, min(kept))
        out = bytearray(b"Z\n")
        for seq, (mt, ts, body) in kept.items():
            out += b"O %d %s %s %d\n%s\n" % (seq, mt, ts, len(body), body)
        out += b"A %d\nI %d\nR %d\n" % (self.next_out - 1, self.next_in, self.last_report)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(out)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._size = len(out)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
