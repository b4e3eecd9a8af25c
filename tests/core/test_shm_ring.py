"""SpscShmRing: lifecycle and framing errors in one process, then two real processes that
carry millions of 64-byte records intact (sequence + CRC checked) with each wait strategy."""

from __future__ import annotations

import multiprocessing as mp
import struct
import zlib
from multiprocessing import shared_memory

import pytest

from tests.core import worker_fns
from tickline.core.shm_ring import BlockingWait, SpscShmRing


def test_create_attach_roundtrip_and_wrap() -> None:
    with SpscShmRing.create(capacity=4, slot_size=8) as ring:
        other = SpscShmRing.attach(ring.name)
        assert (other.capacity, other.slot_size) == (4, 8)
        assert ring.write_many([b"a" * 8, b"b" * 8, b"c" * 8]) == 3
        assert other.read_many(2) == [b"a" * 8, b"b" * 8]
        packed = b"".join(bytes([65 + i]) * 8 for i in range(5))
        assert ring.write_packed(packed) == 3  # 1 waiting, 3 free, wraps at slot 4
        assert not ring.write(b"z" * 8)
        assert other.read_packed(10) == b"c" * 8 + packed[:24]
        assert other.read_packed(10) == b""
        ring.check()
        other.check()
        st = other.statistics()
        assert (st.head, st.tail, st.records_read) == (6, 6, 6)
        other.close()
        other.close()  # idempotent


def test_framing_errors_name_the_value() -> None:
    with SpscShmRing.create(capacity=4, slot_size=16) as ring:
        with pytest.raises(ValueError, match=r"record must be slot_size=16 bytes, got 3"):
            ring.write(b"abc")
        with pytest.raises(ValueError, match=r"multiple of slot_size=16, got 20"):
            ring.write_packed(bytes(20))
        with pytest.raises(ValueError, match=r"every record must be slot_size=16 bytes, got 2"):
            ring.write_many([bytes(16), b"xy"])
    with pytest.raises(ValueError, match=r"capacity must be a power of two >= 2, got 6"):
        SpscShmRing.create(capacity=6, slot_size=8)
    with pytest.raises(ValueError, match=r"slot_size must be a positive multiple of 8, got 12"):
        SpscShmRing.create(capacity=4, slot_size=12)


def test_attach_to_foreign_block_is_refused() -> None:
    shm = shared_memory.SharedMemory(create=True, size=4096)
    try:
        with pytest.raises(ValueError, match=r"is not a tickline ring"):
            SpscShmRing.attach(shm.name)
    finally:
        shm.close()
        shm.unlink()


def test_unlink_removes_the_block() -> None:
    ring = SpscShmRing.create(capacity=4, slot_size=8)
    name = ring.name
    ring.close()
    ring.unlink()
    with pytest.raises(FileNotFoundError):
        SpscShmRing.attach(name)


def test_get_packed_times_out_and_reports_end_of_stream() -> None:
    with SpscShmRing.create(capacity=4, slot_size=8, wait=BlockingWait(recheck=0.01)) as ring:
        assert ring.get_packed(4, timeout=0.02) == b""
        assert not ring.writer_closed
        ring.write(bytes(8))
        ring.close_writer()
        assert ring.get_packed(4, timeout=1) == bytes(8)
        assert ring.get_packed(4, timeout=1) == b"" and ring.writer_closed


def _consume_and_verify(ring: SpscShmRing, total: int) -> None:
    expected = 0
    crc = zlib.crc32
    while True:
        data = ring.get_packed(8192, timeout=30)
        if not data:
            assert ring.writer_closed, "timed out waiting for the producer"
            if len(ring) == 0:
                break
            continue
        for seq, check in struct.iter_unpack("<QQ48x", data):
            assert seq == expected, f"expected {expected}, got {seq}"
            assert check == crc(seq.to_bytes(8, "little")), f"corrupt record {seq}"
            expected += 1
    assert expected == total


@pytest.mark.parametrize(("wait", "total"), [
    ("blocking", 4_000_000),
    ("backoff", 300_000),
    ("yield", 100_000),
    ("spin", 100_000),
])
def test_two_processes_carry_records_intact(wait: str, total: int) -> None:
    ctx = mp.get_context("spawn")
    ring = SpscShmRing.create(capacity=1 << 12, slot_size=64,
                              wait=worker_fns.WAITS[wait]())
    try:
        p = ctx.Process(target=worker_fns.produce, args=(ring.name, total, 1024, wait))
        p.start()
        _consume_and_verify(ring, total)
        p.join(30)
        assert p.exitcode == 0
        ring.check()
        assert ring.statistics().records_read == total
    finally:
        ring.close()
        ring.unlink()
