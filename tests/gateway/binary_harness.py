"""Test harness for the binary gateway: an exchange and a :class:`BinaryGateway` on their own
event loop in a background thread, plus a blocking raw-socket client.

Tests drive the server over real sockets (blocking sockets for byte-level tests, the asyncio
:class:`tickline.client.Client` in ``asyncio.run`` for the rest) and read server state with
:meth:`ServerThread.call`, which runs a function on the server's loop (the engine is
single-threaded: never touch it from the test thread directly).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from tickline.config import Limits, ServerConfig, default_config
from tickline.exchange import Exchange
from tickline.gateway import protocol as p
from tickline.gateway.binary import BinaryGateway

T = TypeVar("T")
SEGMENT = 1 << 20
SHARDS = int(os.environ.get("TICKLINE_TEST_SHARDS", "0"))
"""``TICKLINE_TEST_SHARDS=2``: every harness server runs its engines in 2 shard processes."""


def make_config(**limits: Any) -> ServerConfig:
    cfg = default_config()
    if limits:
        cfg.limits = msgspec.structs.replace(cfg.limits, **limits)
    assert isinstance(cfg.limits, Limits)
    return cfg


class ServerThread:
    """Exchange + binary gateway on a private loop in a daemon thread. Use as a context
    manager; :meth:`stop` drains the exchange and closes the gateway."""

    def __init__(self, config: ServerConfig | None = None, *, journal_dir: Path | None = None,
                 max_output_bytes: int = 8 << 20, send_buffer_bytes: int | None = None,
                 capacity: int = 65536) -> None:
        self.config = config or make_config()
        self.capacity = capacity  # of each inbound lane (one-process exchange only)
        self.journal_dir = journal_dir
        self.max_output_bytes = max_output_bytes
        self.send_buffer_bytes = send_buffer_bytes
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.exchange: Exchange
        self.gateway: BinaryGateway
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="binary-gw", daemon=True)
        self._runner: asyncio.Task[None] | None = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"server thread failed to start: {self._error!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:  # surfaced by __enter__
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _start(self) -> None:
        cfg = self.config
        if SHARDS:  # TICKLINE_TEST_SHARDS=N: the same tests against N shard processes
            from tickline.shard import ShardedExchange
            self.exchange = ShardedExchange(cfg.instruments, shards=SHARDS,
                                            data_dir=self.journal_dir, durability="none",
                                            engine_config=cfg.engine_config())
        else:
            self.exchange = Exchange(cfg.instruments, engine_config=cfg.engine_config(),
                                     journal_dir=self.journal_dir, segment_bytes=SEGMENT,
                                     durability="none", capacity=self.capacity)
        self._runner = asyncio.get_running_loop().create_task(self.exchange.run())
        self.gateway = BinaryGateway(self.exchange, cfg, max_output_bytes=self.max_output_bytes,
                                     send_buffer_bytes=self.send_buffer_bytes)
        self.port = await self.gateway.start("127.0.0.1", 0)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn()`` on the server loop and return its result."""
        async def wrapper() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def digest(self) -> str:
        """A digest of the books (every resting order and its queue place) and the id
        counters, taken on the server loop. Unlike ``engine.digest()`` it leaves out the
        sequence number and engine time, which a rejected (but sequenced) command moves."""
        def book_state() -> str:
            engine = self.exchange.engine
            if SHARDS:
                from tickline.shard import ShardedExchange
                assert isinstance(self.exchange, ShardedExchange)
                books = self.exchange.digest()
                return f"{books}|{engine.next_order_id}|{engine.next_trade_id}"
            books = "|".join(engine.books[s].digest() for s in sorted(engine.books))
            return f"{books}|{engine.next_order_id}|{engine.next_trade_id}"
        return self.call(book_state)

    def stats(self) -> dict[str, Any]:
        return self.call(self.gateway.statistics)

    def settle(self) -> None:
        """Wait until the exchange has nothing queued and one more loop turn ran."""
        for _ in range(200):
            if self.call(lambda: self.exchange.processor.queued()) == 0:
                break
            time.sleep(0.005)
        self.call(lambda: None)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            await self.gateway.stop_accepting()
            await self.exchange.stop()
            if self._runner is not None:
                await self._runner
            await self.gateway.close()
            await asyncio.sleep(0.01)  # let transports finish closing

        try:
            self.run(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


class RawClient:
    """A blocking socket speaking frames: for byte-level and fuzz tests."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = p.FrameReader(1 << 24)
        self.queue: list[p.ServerMessage] = []

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg: msgspec.Struct) -> None:
        self.sock.sendall(p.encode_frame(msg))

    def recv(self, timeout: float = 5.0) -> p.ServerMessage:
        """The next message; raises TimeoutError, or ConnectionError when the server closed."""
        deadline = time.monotonic() + timeout
        while not self.queue:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no message from the server") from None
            if not data:
                raise ConnectionError("server closed the connection")
            self.queue.extend(p.decode_server(f) for f in self.reader.feed(data))
        return self.queue.pop(0)

    def recv_type(self, kind: type[T], timeout: float = 5.0) -> T:
        msg = self.recv(timeout)
        assert isinstance(msg, kind), f"expected {kind.__name__}, got {msg!r}"
        return msg

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Read until EOF; True if the server closed (messages before it are queued)."""
        try:
            while True:
                self.recv(timeout)
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def logon(self, key: str = "alice-key") -> p.LogonAck:
        self.send(p.Logon(key))
        return self.recv_type(p.LogonAck)
