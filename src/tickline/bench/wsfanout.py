"""``tickline bench ws-fanout``: WebSocket market-data fan-out, JSON, to many clients.

What is measured
----------------
One server side in this process -- a real :class:`~tickline.exchange.Exchange` (journal in a
temporary directory, durability ``none``) behind a real
:class:`~tickline.gateway.http.HttpGateway` on a loopback port -- and ``clients`` WebSocket
clients in a *separate process* (so decoding on the client side does not share the server's
core), each subscribed to ``trades``, ``depth`` and ``bbo`` of one symbol.

The server side drives a steady order flow (limit orders around 100.00 from four accounts,
a fraction crossing, some cancels) as fast as its loop allows for ``seconds`` -- ``chunk``
commands submitted per loop turn, the next chunk once the exchange has taken them -- then
waits until every session has sent everything pending. ``chunk`` is the burst size: each
session's sender writes one frame per wake-up, so bigger bursts mean more messages per frame
and fewer frames (the table shows both); the per-message cost is what remains.
*Delivered* messages are the JSON messages the gateway's senders wrote to the clients'
sockets in that window (``WsCounters.messages``), per second of the window's wall time.
Every client decodes every frame it receives and counts its messages; the run checks that
the clients together received exactly what the gateway sent (nothing counted that was not
delivered).

Because the machine may be shared, the server side's CPU time in the window is reported too
(``messages_per_cpu_second``: messages per CPU second of the server process, which other
load on the machine moves much less than wall time).

JSON keys other tools read: ``messages_per_second``, ``messages_per_cpu_second``,
``messages``, ``frames``, ``seconds``, ``cpu_seconds``, ``clients``, ``chunk``, ``received``,
``commands``, ``slow_disconnects``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tickline.bench.report import machine, write_json

__all__ = ["run"]

_SYMBOL = "AAPL"


# -- the clients' process --------------------------------------------------------------------

def _clients_main(port: int, n: int, conn: multiprocessing.connection.Connection) -> None:
    asyncio.run(_clients(port, n, conn))


async def _clients(port: int, n: int, conn: multiprocessing.connection.Connection) -> None:
    import msgspec
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws"
    wss = [await connect(url, max_size=1 << 24, compression=None, open_timeout=30)
           for _ in range(n)]
    counts = [0] * n
    subscribed = 0
    ready = asyncio.Event()
    decoder = msgspec.json.Decoder()

    async def read(i: int) -> None:
        nonlocal subscribed
        async for frame in wss[i]:
            msgs = decoder.decode(frame)
            counts[i] += len(msgs)
            if not ready.is_set() and any(m.get("type") == "snapshot" for m in msgs):
                subscribed += 1
                if subscribed == n:
                    ready.set()

    tasks = [asyncio.create_task(read(i)) for i in range(n)]
    request = msgspec.json.encode({"op": "subscribe", "symbol": _SYMBOL,
                                   "channels": ["trades", "depth", "bbo"]}).decode()
    for ws in wss:
        await ws.send(request)
    await asyncio.wait_for(ready.wait(), 60)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # the server has sent everything
    await asyncio.sleep(0.5)
    conn.send(list(counts))
    for ws in wss:
        await ws.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- the server side -------------------------------------------------------------------------

class _Server:
    """What :class:`HttpGateway` needs from ``tickline.server.Server``."""

    def __init__(self, exchange: Any, config: Any) -> None:
        from prometheus_client.registry import CollectorRegistry

        self.exchange = exchange
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}


def _flow(rnd: random.Random, n: int) -> list[tuple[int, int, int, int, int, int]]:
    """``n`` order templates ``(kind, account, side, price, quantity, tif)`` (kind 1 = cancel
    of an order ``price`` templates back); client order ids are added per pass, so every
    pass over the templates enters new orders instead of duplicate-id rejects."""
    from tickline.matching import BUY, SELL

    out: list[tuple[int, int, int, int, int, int]] = []
    for i in range(n):
        account = 11 + rnd.randrange(4)
        if i > 10 and rnd.random() < 0.1:
            out.append((1, account, 0, rnd.randrange(1, 10), 0, 0))
            continue
        side = rnd.choice((BUY, SELL))
        offset = rnd.randint(-3, 25)
        price = 10_000 - offset if side == BUY else 10_000 + offset
        out.append((0, account, side, price, rnd.randint(1, 20),
                    1 if rnd.random() < 0.85 else 2))
    return out


def _command(t: tuple[int, int, int, int, int, int], n: int) -> Any:
    """The ``n``-th command of the run from template ``t``."""
    from tickline.matching import Cancel, NewOrder

    kind, account, side, price, quantity, tif = t
    if kind == 1:
        return Cancel(account=account, symbol=_SYMBOL, orig_client_order_id=f"o{n - price}")
    return NewOrder(account=account, symbol=_SYMBOL, side=side, price=price, quantity=quantity,
                    client_order_id=f"o{n}", tif=tif)


async def _serve_and_drive(clients: int, seconds: float, chunk: int,
                           directory: Path) -> dict[str, Any]:
    from tickline.config import default_config
    from tickline.exchange import Exchange
    from tickline.gateway.http import HttpGateway

    config = default_config()
    ex = Exchange(config.instruments, engine_config=config.engine_config(),
                  journal_dir=directory / "journal", durability="none")
    runner = asyncio.create_task(ex.run())
    gw = HttpGateway(_Server(ex, config), max_sessions=clients + 8,
                     max_anonymous=clients + 8, max_per_address=clients + 8)
    port = await gw.start("127.0.0.1", 0)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_clients_main, args=(port, clients, child), daemon=True)
    proc.start()
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, parent.recv)  # every client has its snapshots
        rnd = random.Random(7)
        counters = gw.counters
        m0, f0, c0 = counters.messages, counters.frames, ex.commands
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        deadline = t0 + seconds
        flow = _flow(rnd, 10_000)
        n = 0
        while time.perf_counter() < deadline:
            for _ in range(chunk):
                ex.submit(_command(flow[n % len(flow)], n))
                n += 1
            await asyncio.sleep(0)
            while ex.processor.has_work():  # keep the inbound queue short
                await asyncio.sleep(0)
        # Drain: every session has written what is pending.
        while ex.processor.has_work() or any(s.pending() for s in gw._sessions):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        t1 = time.perf_counter()
        cpu = time.process_time() - cpu0
        messages, frames = counters.messages - m0, counters.frames - f0
        parent.send("done")
        received = await loop.run_in_executor(None, parent.recv)
        return {"clients": clients, "chunk": chunk, "seconds": t1 - t0, "messages": messages,
                "frames": frames, "messages_per_second": messages / (t1 - t0),
                "cpu_seconds": cpu, "messages_per_cpu_second": messages / cpu,
                "commands": ex.commands - c0, "received": sum(received),
                "sent_total": counters.messages, "slow_disconnects": counters.slow,
                "min_client": min(received), "max_client": max(received)}
    finally:
        await gw.close()  # first: the clients' closing handshakes need this loop
        await loop.run_in_executor(None, proc.join, 10)
        if proc.is_alive():
            proc.kill()
        await ex.stop()
        await runner


def run(*, clients: int = 100, seconds: float = 5.0, chunk: int = 1000,
        json_path: Path | None = None) -> dict[str, Any]:
    """Run the fan-out benchmark once; print a table, optionally write JSON."""
    console = Console()
    directory = Path(tempfile.mkdtemp(prefix="tl-wsfanout-"))
    try:
        result = asyncio.run(_serve_and_drive(clients, seconds, chunk, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    table = Table(title=f"WebSocket fan-out, JSON, {clients} clients ({_SYMBOL}: trades, "
                        f"depth, bbo), {chunk} commands per burst")
    for col in ("messages/s delivered", "per server CPU s", "messages", "frames", "commands",
                "seconds", "received = sent", "slow disconnects"):
        table.add_column(col, justify="right")
    table.add_row(f"{result['messages_per_second']:,.0f}",
                  f"{result['messages_per_cpu_second']:,.0f}", f"{result['messages']:,}",
                  f"{result['frames']:,}", f"{result['commands']:,}",
                  f"{result['seconds']:.2f}",
                  str(result["received"] == result["sent_total"]),
                  str(result["slow_disconnects"]))
    console.print(table)
    if json_path is not None:
        write_json(json_path, {"benchmark": "ws-fanout", "machine": machine(), **result})
    return result
