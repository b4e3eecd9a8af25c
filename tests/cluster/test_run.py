"""``tickline cluster-engine`` (:func:`tickline.cluster.run.run_engine`): the start-up heap is
frozen while the node runs (``[server] gc_freeze``, as ``tickline serve``; measured: an
engine node's full collections took 43-69 ms unfrozen) and given back when it stops; with
``gc_freeze = false`` nothing is frozen (real nats-server)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tickline.cluster.natsserver import NatsServer
from tickline.cluster.run import run_engine
from tickline.config import load_config


async def _freeze_count_while_running(url: str, capsys: pytest.CaptureFixture[str], *,
                                      gc_freeze: bool) -> tuple[int, int, int]:
    cfg = load_config(None, gc_freeze=gc_freeze)
    stop = asyncio.Event()
    before = gc.get_freeze_count()
    task = asyncio.ensure_future(run_engine(cfg, url, lease_s=0.6, snapshot_every=0,
                                            node_id="t", stop=stop))
    deadline = asyncio.get_running_loop().time() + 20
    out = ""
    while "READY node=t" not in out and not task.done():  # printed once following
        assert asyncio.get_running_loop().time() < deadline, "the node did not start"
        await asyncio.sleep(0.02)
        out += capsys.readouterr().out
    during = gc.get_freeze_count()
    stop.set()
    assert await asyncio.wait_for(task, 20) == 0
    return before, during, gc.get_freeze_count()


@pytest.mark.parametrize("gc_freeze", [True, False])
def test_engine_node_freezes_its_start_up_heap_while_running(
        nats_server: NatsServer, gc_freeze: bool, capsys: pytest.CaptureFixture[str]) -> None:
    before, during, after = asyncio.run(_freeze_count_while_running(
        nats_server.url, capsys, gc_freeze=gc_freeze))
    assert before == 0 and after == 0
    if gc_freeze:
        assert during > 10_000  # the modules, nats-py, the configuration, the engine
    else:
        assert during == 0
