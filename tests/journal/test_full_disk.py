"""Snapshots on a really full disk (issue 14, item 2): a real ``tickline serve`` whose
journal is on a small tmpfs. The journal segment is pre-allocated, so orders keep being
journaled and acknowledged; the snapshots do not fit. Each failure must be logged, counted
(``snapshots_failed``), shown on ``/health`` (degraded, 503) and ``/metrics``, leave no
temporary file, and SIGTERM must still close the journal and exit 0; a restart recovers
everything from the journal.

The tmpfs is mounted in a private mount namespace (``unshare -m``) held by a ``sleep``, and
the servers run inside it (``nsenter``): nothing is mounted on the machine itself, and the
mount vanishes with the holder. Skipped, with the reason, where mounting is not permitted.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.served import Served
from tickline.client import Client

SEGMENT = 64 << 20  # the server's segment size: pre-allocated on the tmpfs
ROOM = 64 << 10
"""What the tmpfs holds beyond the segment: journal.meta and the first snapshot (200 orders,
about 28 KiB), not a second one beside it (400 orders or more: 56 KiB and up)."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[list[str], Path, Path]]:
    """``(wrapper, path, outside)``: run a command under ``wrapper`` to see a tmpfs of
    ``SEGMENT + ROOM`` bytes at ``path``; ``outside`` is the same directory as seen from
    the test (through the holder's ``/proc/<pid>/root``)."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("needs unshare and nsenter (util-linux) to mount a private tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t tmpfs -o size={SEGMENT + ROOM} tmpfs {mnt} && echo mounted "
         f"&& exec sleep 600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stderr is not None
    try:
        if holder.stdout.readline() != "mounted\n":
            holder.wait(10)
            pytest.skip(f"mounting a tmpfs is not permitted here: {holder.stderr.read()!r}")
        yield (["nsenter", "-t", str(holder.pid), "-m", "--"], mnt,
               Path(f"/proc/{holder.pid}/root") / mnt.relative_to("/"))
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()
        holder.stderr.close()


def _send_resting(port: int, n: int, start: int) -> None:
    """``n`` acknowledged orders that rest (bids below, asks above 100.00)."""

    async def go() -> None:
        async with await Client.connect("127.0.0.1", port, "alice-key") as c:
            futs = [c.send_new_order("AAPL", "buy" if i % 2 else "sell", 1 + i % 4,
                                     f"{90 - i % 50 / 10:.2f}" if i % 2
                                     else f"{110 + i % 50 / 10:.2f}",
                                     client_order_id=f"d{i}")
                    for i in range(start, start + n)]
            for resp in await asyncio.gather(*futs):
                assert type(resp.reports[0]).__name__ == "OrderAccepted", resp

    asyncio.run(asyncio.wait_for(go(), 60))


def _health_when(server: Served, done: Callable[[dict[str, Any]], bool]
                 ) -> tuple[int, dict[str, Any]]:
    """Poll ``/health`` until ``done(health)`` (snapshots are written on a thread)."""
    deadline = time.monotonic() + 20
    while True:
        status, body = server.get("/health")
        health = json.loads(body)
        if done(health) or time.monotonic() > deadline:
            return status, health
        time.sleep(0.02)


def test_snapshots_on_a_full_tmpfs_degrade_health_and_shutdown_still_closes(
        tmp_path: Path, small_disk: tuple[list[str], Path, Path]) -> None:
    wrapper, mnt, outside = small_disk
    config = tmp_path / "tickline.toml"
    config.write_text("[server]\nsnapshot_every = 200\n")
    journal = mnt / "journal"
    seen = outside / "journal"
    server = Served(journal, "--config", str(config), wrapper=wrapper)
    try:
        _send_resting(server.port, 200, 0)  # a small book: its snapshot fits
        status, health = _health_when(server, lambda h: h["snapshots"]["written"] == 1)
        assert status == 200 and health["status"] == "ok", health
        assert health["snapshots"]["written"] == 1, health
        _send_resting(server.port, 2400, 200)  # a big book: its snapshots do not
        status, health = _health_when(server, lambda h: h["snapshots"]["failed"] >= 1)
        assert status == 503 and health["status"] == "degraded", health
        assert "No space left on device" in health["reason"], health
        assert health["snapshots"]["failed"] >= 1, health
        assert health["resting_orders"] == 2600  # trading went on: the journal had room
        _status, metrics = server.get("/metrics")
        assert (f"tickline_exchange_snapshots_failed_total "
                f"{health['snapshots']['failed']}") in metrics.decode()
        assert "tickline_exchange_snapshots_total 1" in metrics.decode()
        assert not [p.name for p in seen.iterdir() if p.name.endswith(".tmp")]
        assert len(list(seen.glob("snapshot-*.tks"))) == 1
        book = server.get_json("/book/AAPL?depth=1000")
        assert server.terminate() == 0
    finally:
        server.close()
    out = server.output()
    assert "snapshot failed" in out and "Traceback" not in out, out
    assert "server closed" in out, out  # the HTTP gateway shut down
    assert (seen / "journal.lock").read_bytes() == b""  # Journal.close released it
    assert not [p.name for p in seen.iterdir() if p.name.endswith(".tmp")]

    again = Served(journal, "--config", str(config), wrapper=wrapper)
    try:  # the journal is the source of truth: every order is back
        assert again.get_json("/health")["resting_orders"] == 2600
        restored = again.get_json("/book/AAPL?depth=1000")
        restored.pop("ts"), book.pop("ts")  # the time of the last market-data update
        assert restored == book
        assert again.terminate() == 0
    finally:
        again.close()
