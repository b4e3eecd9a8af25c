"""A real :class:`tickline.server.Server` with the FIX acceptor on, on its own event loop in
a background thread (free ports, a private journal and session store), for FIX tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tickline.config import FixSessionConfig, ServerConfig, default_config
from tickline.gateway.fix.client import FixClient
from tickline.server import Server

T = TypeVar("T")

# (SenderCompID, account name, cancel_on_disconnect); keys are the demo accounts'
SESSIONS = [("ALICE", "alice", False), ("BOB", "bob", False), ("DEMO", "demo", True)]
KEYS = {"ALICE": "alice-key", "BOB": "bob-key-3", "DEMO": "demo-key-1"}


def fix_config(journal: Path, extra: list[tuple[str, str, bool]] = ()  # type: ignore[assignment]
               ) -> ServerConfig:
    cfg = default_config()
    cfg.server.journal_dir = str(journal)
    cfg.server.port = 0
    cfg.server.http_port = 0
    cfg.server.durability = "none"
    cfg.fix.port = 0
    cfg.fix.sessions = [FixSessionConfig(sender_comp_id=s, account=a, cancel_on_disconnect=c)
                        for s, a, c in [*SESSIONS, *extra]]
    return cfg.validate()


class FixServer:
    """``with FixServer(tmp_path) as srv:`` — a server whose FIX port is ``srv.fix_port``."""

    def __init__(self, journal: Path, config: ServerConfig | None = None) -> None:
        self.config = config or fix_config(journal)
        self.loop = asyncio.new_event_loop()
        self.server: Server
        self.fix_port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fix-server", daemon=True)

    def __enter__(self) -> FixServer:
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"server failed to start: {self._error!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _start(self) -> None:
        self.server = Server(self.config)
        await self.server.start()
        self.fix_port = self.server.fix_port

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        async def wrapper() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def stats(self) -> dict[str, Any]:
        fix = self.server.fix
        assert fix is not None
        return self.call(fix.statistics)

    def digest(self) -> str:
        def books() -> str:
            engine = self.server.exchange.engine
            return "|".join(engine.books[s].digest() for s in sorted(engine.books))
        return self.call(books)

    def client(self, sender: str = "ALICE", *, logon: bool = True, reset: bool = True,
               heartbeat: int = 30) -> FixClient:
        c = FixClient("127.0.0.1", self.fix_port, sender)
        if logon:
            answer = c.logon(KEYS[sender], heartbeat=heartbeat, reset=reset)
            assert answer.msg_type == "A", answer
        return c

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
