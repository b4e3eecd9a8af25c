"""Variable-length frames over a :class:`~tickline.core.shm_ring.SpscShmRing`.

The ring moves fixed-size slots; a frame is a little-endian u32 payload length, the payload,
and zero padding up to a whole number of slots, so every frame starts on a slot boundary. A
frame larger than the ring is fine: :meth:`FrameWriter.send` waits for room slot by slot
while the reader drains. One writer and one reader per ring (the ring's contract).
"""

from __future__ import annotations

import struct

from tickline.core.shm_ring import SpscShmRing

__all__ = ["SLOT", "FrameReader", "FrameWriter"]

SLOT = 64
_LEN = struct.Struct("<I")


def pad(payload: bytes) -> bytes:
    """``payload`` framed: length word, bytes, zero padding to a multiple of :data:`SLOT`."""
    n = len(payload) + 4
    return _LEN.pack(len(payload)) + payload + bytes(-n % SLOT)


class FrameWriter:
    def __init__(self, ring: SpscShmRing) -> None:
        self.ring = ring

    def send(self, payload: bytes, timeout: float | None = None) -> bool:
        """Write one frame; False if ``timeout`` expired first (the frame is then partly
        written: the channel is unusable and must be recreated)."""
        data = pad(payload)
        return self.ring.put_packed(data, timeout) * SLOT == len(data)

    def send_framed(self, data: bytes | bytearray, timeout: float | None = None) -> bool:
        """Write already framed bytes (one or many :func:`pad` outputs back to back)."""
        return self.ring.put_packed(data, timeout) * SLOT == len(data)


class FrameReader:
    def __init__(self, ring: SpscShmRing, max_records: int = 4096) -> None:
        self.ring = ring
        self.max_records = max_records
        self._buf = bytearray()

    def poll(self, timeout: float | None = None) -> list[bytes]:
        """Every complete frame available (waiting up to ``timeout`` for the first slot);
        ``[]`` on timeout or at end of stream."""
        buf = self._buf
        data = self.ring.get_packed(self.max_records, timeout)
        if data:
            buf += data
            more = self.ring.read_packed(self.max_records)
            while more:
                buf += more
                more = self.ring.read_packed(self.max_records)
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            total = n + 4 + (-(n + 4) % SLOT)
            if end - pos < total:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += total
        if pos:
            del buf[:pos]
        return out
