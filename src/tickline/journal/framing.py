"""Framing a batch of commands into the journal's batch buffer, in one call.

:meth:`tickline.journal.Journal.append_many` calls :func:`frame_commands` once per batch:
each command's frame (see :mod:`tickline.journal.format`: length, CRC32C, sequence number,
type, flags, reserved, then the msgpack payload) is appended to the batch buffer — the same
bytes as :meth:`~tickline.journal.Journal.append`'s. A module of its own so that the
compiled build (:data:`tickline._build.CANDIDATES`) runs the per-command loop as native
code (its calls into msgspec, ``struct`` and ``crc32c`` stay C calls, the interpreter's
per-command bytecode goes); the journal itself (a dataclass, an enum, file handling) stays
interpreted. No state of its own; single writer: the journal's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from tickline.journal.format import (
    BODY_HEADER,
    LENGTH_CRC,
    JournalError,
    crc32c,
)

__all__ = ["frame_commands"]

_pack_body: Final = BODY_HEADER.pack
_pack_lc: Final = LENGTH_CRC.pack
_crc: Final = crc32c


def frame_commands(journal: Any, cmds: Iterable[Any], encode: Callable[[Any], bytes],
                   roll: Callable[[int, int], None]) -> int:
    """Frame every command of ``cmds`` (record type 1, ``cmd.seq`` strictly increasing
    after ``journal.last_seq``) into ``journal._buf``; returns how many. A frame that does
    not fit in the segment (``journal._limit - journal._pos``) first calls
    ``roll(frame_bytes, last_framed_seq)`` (it spills the buffer, seals the segment, starts
    the next one). ``journal.last_seq`` is the last framed sequence number afterwards, also
    when it raises (:class:`JournalError` for a sequence number that does not increase,
    the frames before it staying in the buffer; or what ``roll`` raised)."""
    last: int = journal.last_seq
    buf: bytearray = journal._buf
    room: int = journal._limit - journal._pos
    pack_body = _pack_body  # locals: the interpreted build reads them faster than globals
    pack_lc = _pack_lc
    crc = _crc
    count = 0
    try:
        for cmd in cmds:
            seq: int = cmd.seq
            if seq <= last:
                raise JournalError(f"sequence numbers must increase: got {seq} after {last}")
            body = pack_body(seq, 1, 0, 0) + encode(cmd)  # 1: RECORD_COMMAND
            n = len(body) + 8
            if len(buf) + n > room:
                roll(n, last)
                room = journal._limit - journal._pos
            buf += pack_lc(n, crc(body))
            buf += body
            last = seq
            count += 1
    finally:
        journal.last_seq = last
    return count
