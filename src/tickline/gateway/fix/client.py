"""A small blocking FIX 4.4 initiator over a real socket, for tests and tools: it encodes with
the acceptor's own :class:`~tickline.gateway.fix.codec.Encoder` (or sends raw bytes, to break
rules on purpose) and parses what comes back with the acceptor's framer and parser."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from tickline.gateway.fix import codec

__all__ = ["FixClient"]


class FixClient:
    """One connection as ``sender`` to the acceptor ``target``. ``seq`` is the next
    MsgSeqNum to send; :attr:`received` keeps every message read."""

    def __init__(self, host: str, port: int, sender: str, target: str = "TICKLINE",
                 *, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sender = sender
        self.target = target
        self.encoder = codec.Encoder(sender, target)
        self.reader = codec.FixReader()
        self.seq = 1
        self.timeout = timeout
        self.inbox: list[codec.FixMessage] = []
        self.received: list[codec.FixMessage] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> FixClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def encode(self, msg_type: str, fields: Iterable[tuple[int, str | int | bytes]] = (),
               *, seq: int | None = None, poss_dup: bytes | None = None,
               sending_time: bytes | None = None) -> bytes:
        """One message (``seq`` None: the next number, which is then consumed)."""
        if seq is None:
            seq = self.seq
            self.seq += 1
        return self.encoder.encode(msg_type, seq, codec.body(fields), now=sending_time,
                                   poss_dup=poss_dup)

    def send(self, msg_type: str, fields: Iterable[tuple[int, str | int | bytes]] = (),
             **kw: object) -> bytes:
        data = self.encode(msg_type, fields, **kw)  # type: ignore[arg-type]
        self.sock.sendall(data)
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def logon(self, password: str, *, heartbeat: int = 30, reset: bool = True,
              username: str | None = None) -> codec.FixMessage:
        """Send Logon and return the acceptor's answer (Logon, or Logout when refused)."""
        fields: list[tuple[int, str | int | bytes]] = [(98, 0), (108, heartbeat)]
        if reset:
            fields.append((141, "Y"))
        if username is not None:
            fields.append((553, username))
        fields.append((554, password))
        self.send("A", fields)
        return self.expect("A", "5")

    # -- receiving -------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> codec.FixMessage | None:
        """The next message, or None if none came within ``timeout`` (or the peer closed)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.inbox:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                return None
            if not data:
                return None
            for item in self.reader.feed(data):
                if isinstance(item, bytes):
                    msg = codec.parse(item)
                    self.inbox.append(msg)
                    self.received.append(msg)
        return self.inbox.pop(0)

    def expect(self, *msg_types: str, timeout: float | None = None) -> codec.FixMessage:
        """The next message that is one of ``msg_types``, skipping Heartbeats (and answering
        TestRequests); AssertionError if none comes."""
        while True:
            msg = self.recv(timeout)
            if msg is None:
                raise AssertionError(f"no {msg_types} message received")
            if msg.msg_type in msg_types:
                return msg
            if msg.msg_type == "1":
                self.send("0", [(112, msg.get(112))])
            elif msg.msg_type != "0":
                raise AssertionError(f"expected {msg_types}, got {msg!r}")

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the acceptor closes the connection within ``timeout`` (messages
        before that are kept in :attr:`inbox`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            for item in self.reader.feed(data):
                if isinstance(item, bytes):
                    msg = codec.parse(item)
                    self.inbox.append(msg)
                    self.received.append(msg)
        return False
