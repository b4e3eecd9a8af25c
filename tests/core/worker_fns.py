"""Module-level functions the process tests run in child processes (they must be importable
by a spawned interpreter, so they cannot live inside a test function)."""

from __future__ import annotations

import struct
import zlib

from tickline.core.shm_ring import BackoffWait, BlockingWait, SpinWait, SpscShmRing, YieldWait

RECORD = struct.Struct("<QQ48x")  # sequence, crc32 of the sequence bytes, padding to 64 bytes
WAITS = {"spin": SpinWait, "yield": YieldWait, "backoff": BackoffWait, "blocking": BlockingWait}


def produce(name: str, total: int, chunk: int, wait: str) -> None:
    """Write ``total`` 64-byte records (sequence + CRC) in packed chunks, then close."""
    ring = SpscShmRing.attach(name, wait=WAITS[wait]())
    buf = bytearray(RECORD.size * chunk)
    pack = RECORD.pack_into
    crc = zlib.crc32
    i = 0
    while i < total:
        k = min(chunk, total - i)
        for j in range(k):
            s = i + j
            pack(buf, j * 64, s, crc(s.to_bytes(8, "little")))
        assert ring.put_packed(memoryview(buf)[:k * 64], timeout=60) == k
        i += k
    ring.close_writer()
    ring.close()


def tag_handler(payload: bytes) -> bytes:
    """Echo ``key:seq`` back with the worker's view, for the per-key-order test."""
    return payload
