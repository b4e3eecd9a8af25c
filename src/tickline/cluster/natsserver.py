"""A private ``nats-server`` with JetStream, for tests, benchmarks and local demos.

:class:`NatsServer` starts its own server process on free ports with its own store directory
and stops it afterwards; it never touches a server that may already run on this machine
(4222). Production clusters are run by the operator (see ``docs/cluster.md``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["NatsServer", "NatsServerError", "find_nats_server", "free_port"]

_CANDIDATES = ("/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server")


class NatsServerError(RuntimeError):
    """``nats-server`` is missing or did not come up."""


def find_nats_server() -> str:
    """The path of the ``nats-server`` binary (``$NATS_SERVER``, ``PATH``, Debian's place).
    Raises :class:`NatsServerError` when there is none (``apt-get install nats-server``)."""
    env = os.environ.get("NATS_SERVER")
    if env:
        return env
    found = shutil.which("nats-server")
    if found:
        return found
    for c in _CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    raise NatsServerError("nats-server not found: apt-get install -y nats-server")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """One ``nats-server -js`` process on 127.0.0.1, a free client port and its own store
    directory (``store_dir``, or a temporary one removed on :meth:`stop`).

    ``start()`` waits until the client port accepts connections (``timeout`` seconds);
    ``stop()`` sends SIGTERM, then SIGKILL after 5 s. Usable as a context manager.
    """

    def __init__(self, store_dir: Path | str | None = None, *, port: int = 0) -> None:
        self._own_dir = store_dir is None
        self.store_dir = Path(store_dir) if store_dir is not None else Path(
            tempfile.mkdtemp(prefix="tickline-nats-"))
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> NatsServer:
        binary = find_nats_server()
        log = self.store_dir / "nats-server.log"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.store_dir / "jetstream"), "-l", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else ""
                raise NatsServerError(f"nats-server exited {self.proc.returncode}: {text}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.port} in {timeout} s")

    def stop(self) -> None:
        proc = self.proc
        self.proc = None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
