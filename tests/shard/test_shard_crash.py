"""``tickline serve --shards 2`` end to end over real sockets and processes: a shard process
SIGKILLed under a running server is reported on ``/health``, restarted from its journal, its
symbols answered ``SHARD_UNAVAILABLE`` (411) meanwhile while the other shard trades on; every
acknowledged order survives (also a clean restart of the whole server), and a different
shard count over existing data is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.served import ROOT, Served, serve_argv
from tickline.client import Client
from tickline.client_types import OrderRejectedError
from tickline.matching import RejectReason
from tickline.shard import default_shard

pytestmark = pytest.mark.slow

ALICE = "alice-key"


def _open_ids(port: int) -> dict[str, int]:
    async def go() -> dict[str, int]:
        async with await Client.connect("127.0.0.1", port, ALICE) as c:
            return {o.client_order_id: o.order_id for o in await c.open_orders()}
    return asyncio.run(asyncio.wait_for(go(), 30))


def _shard(server: Served, k: int) -> dict[str, object]:
    shards = server.get_json("/health")["shards"]
    assert [s["shard"] for s in shards] == [0, 1]
    return shards[k]  # type: ignore[no-any-return]


def test_shard_sigkill_restart_411_meanwhile_nothing_acknowledged_lost(tmp_path: Path) -> None:
    data = tmp_path / "data"
    aapl = default_shard("AAPL", 2)
    msft = default_shard("MSFT", 2)
    assert aapl != msft  # the documented map puts them on different shards
    server = Served(data, "--shards", "2")
    try:
        health = server.get_json("/health")
        assert health["status"] == "ok" and all(s["up"] for s in health["shards"])
        victim = _shard(server, aapl)
        pid = victim["pid"]
        assert isinstance(pid, int) and pid != server.proc.pid
        outcome: dict[str, list[str]] = {"411": [], "acked_aapl": [], "acked_msft": []}

        async def scenario() -> dict[str, int]:
            acked: dict[str, int] = {}
            async with await Client.connect("127.0.0.1", server.port, ALICE) as c:
                for i in range(20):  # resting orders on both shards
                    for sym in ("AAPL", "MSFT"):
                        ack = await c.new_order(sym, "sell", 1, f"{200 + i}.00",
                                                client_order_id=f"{sym}-{i}")
                        acked[f"{sym}-{i}"] = ack.order_id
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 60
                i = 100
                while time.monotonic() < deadline:
                    i += 1
                    ack_m = await c.new_order("MSFT", "sell", 1, "300.00",
                                              client_order_id=f"MSFT-{i}")
                    acked[f"MSFT-{i}"] = ack_m.order_id  # the other shard trades on
                    outcome["acked_msft"].append(f"MSFT-{i}")
                    try:
                        ack = await c.new_order("AAPL", "sell", 1, "300.00",
                                                client_order_id=f"AAPL-{i}")
                    except OrderRejectedError as e:
                        assert e.reason == RejectReason.SHARD_UNAVAILABLE == 411, e
                        outcome["411"].append(f"AAPL-{i}")
                        await asyncio.sleep(0.02)
                        continue
                    acked[f"AAPL-{i}"] = ack.order_id
                    outcome["acked_aapl"].append(f"AAPL-{i}")
                    break
            return acked

        acked = asyncio.run(asyncio.wait_for(scenario(), 90))
        assert outcome["411"], "the first order after the kill must meet the dead shard"
        assert outcome["acked_aapl"], "the shard never came back"
        restarted = _shard(server, aapl)
        assert restarted["up"] and restarted["restarts"] == 1 and restarted["pid"] != pid
        assert _shard(server, msft)["restarts"] == 0
        assert server.get_json("/health")["status"] == "ok"
        # every acknowledged order is open exactly once; no 411-rejected one exists
        assert _open_ids(server.port) == acked
        assert server.terminate() == 0
    finally:
        server.close()

    again = Served(data, "--shards", "2")  # a clean restart: everything recovered per shard
    try:
        assert _open_ids(again.port) == acked
        assert again.terminate() == 0
    finally:
        again.close()

    proc = subprocess.run(serve_argv(data, "--shards", "3"), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert "written by 2 shard(s), not 3" in proc.stderr
