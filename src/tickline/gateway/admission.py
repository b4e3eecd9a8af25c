"""Who may open a WebSocket: the browser-origin rule and the session budgets.

Origins
-------
A browser sends ``Origin`` with every WebSocket handshake (and with cross-site requests). A
request carrying an ``Origin`` is served only when that origin is one of

* this server's own listen addresses: ``http(s)://host:port`` for every address the gateway
  is bound to; when bound to loopback, ``127.0.0.1``, ``localhost`` and ``[::1]`` at that
  port are equivalent; when bound to every interface (``0.0.0.0``/``::``) the loopback names
  and the machine's host name at that port;
* or listed in ``[websocket] allowed_origins`` (exact scheme, host and port).

It is never compared with the request's ``Host`` header: a DNS-rebinding page at
``http://evil.example:8080`` whose name now resolves to this server sends ``Host`` and
``Origin`` that agree with each other, and must still be refused (403). A request without
``Origin`` (a non-browser client: curl, Prometheus, the test suite) is allowed: ``Origin``
protects browsers' users, and a non-browser client can send any header it likes anyway.

Session budgets
---------------
``max_sessions`` WebSocket sessions in all. A session that has not logged in is
*anonymous*; market data needs no login (the dashboard never logs in), so anonymous sessions
are legitimate, but they cost nothing to open, so they get a budget of their own that cannot
crowd out logged-in sessions:

1. at most ``max_anonymous`` anonymous sessions (keep it below ``max_sessions``);
2. at most ``max_per_address`` not-logged-in sessions (anonymous or on probation, below)
   per source address;
3. a connection that arrives while the anonymous budget is full is still admitted if there
   is room in ``max_sessions``, *on probation*: it may only ``ping`` and ``login``
   (anything else gets ``not_authenticated``) and is closed (1008) if it has not logged in
   within ``login_timeout_seconds``;
4. a login moves a session out of rules 1-3: logged-in sessions are limited only by
   ``max_sessions``.

So clients that connect and idle can hold at most ``max_anonymous`` slots for good, and any
further slot for ``login_timeout_seconds`` at a time, ``max_per_address`` per address.
Logged-in sessions have no per-address cap (one trading firm may run many from one
address). Refusals are HTTP 503 with ``too_many_sessions`` or ``too_many_from_address``
(counted in ``tickline_ws_sessions_refused_total``); a handshake that passed the check while
others raced it is closed at once with 1013 (try again later) instead.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Admission", "OriginError", "OriginPolicy", "Refusal", "parse_origin"]

_DEFAULT_PORT = {"http": 80, "https": 443}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class OriginError(ValueError):
    """An origin that is not ``http(s)://host[:port]``; the message shows the value."""


def parse_origin(origin: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a serialized origin, host lower-cased (IPv6 in brackets),
    the port explicit. Raises :class:`OriginError` for anything else (``null``, a path,
    credentials, another scheme)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        raise OriginError(f"not an origin: {origin[:100]!r}") from None
    host = parts.hostname
    if (parts.scheme not in _DEFAULT_PORT or not host or parts.path not in ("", "/")
            or parts.query or parts.fragment or parts.username is not None):
        raise OriginError(f"an origin is http(s)://host[:port], got {origin[:100]!r}")
    if ":" in host:
        host = f"[{host}]"
    return parts.scheme, host, port if port is not None else _DEFAULT_PORT[parts.scheme]


def _host_names(address: str) -> list[str]:
    """The names a browser may use in an origin for a socket bound to ``address``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return [address.lower()]
    if ip.is_loopback:
        return list(_LOOPBACK_NAMES)
    if ip.is_unspecified:
        return [*_LOOPBACK_NAMES, socket.gethostname().lower()]
    return [f"[{ip}]" if ip.version == 6 else str(ip)]


class OriginPolicy:
    """Which ``Origin`` values are served: this server's listen addresses and the allow-list
    (see the module docstring). O(1) per check."""

    def __init__(self, listen: Iterable[tuple[str, int]], allowed: Iterable[str] = ()) -> None:
        self._own: set[tuple[str, int]] = set()
        for address, port in listen:
            self._own.update((name, port) for name in _host_names(address))
        self._allowed = {parse_origin(o) for o in allowed}

    def allows(self, origin: str | None) -> bool:
        """``True`` for no ``Origin`` at all, an own address or an allow-listed origin."""
        if origin is None:
            return True
        try:
            parsed = parse_origin(origin)
        except OriginError:
            return False
        return parsed[1:] in self._own or parsed in self._allowed


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a handshake is refused: the error code and a message naming the limit."""

    code: str
    message: str


class Admission:
    """The session budgets (see the module docstring). Counts sessions that have not logged
    in, in all and per source address. Single writer: the event loop."""

    def __init__(self, max_sessions: int, max_anonymous: int, max_per_address: int) -> None:
        self.max_sessions = max_sessions
        self.max_anonymous = min(max_anonymous, max_sessions)
        self.max_per_address = max_per_address
        self.sessions = 0
        self.anonymous = 0
        self.probation = 0
        self._per_address: dict[str, int] = {}

    def check(self, address: str) -> tuple[Refusal | None, bool]:
        """Whether a new connection from ``address`` may open now: ``(refusal, probation)``
        with ``refusal`` ``None`` when it may, and ``probation`` ``True`` when it is admitted
        beyond the anonymous budget (must log in in time). Changes nothing."""
        if self.sessions >= self.max_sessions:
            return Refusal("too_many_sessions",
                           f"at most {self.max_sessions} WebSocket sessions (max_sessions)"), False
        if self._per_address.get(address, 0) >= self.max_per_address:
            return Refusal("too_many_from_address",
                           f"at most {self.max_per_address} sessions that have not logged in "
                           f"per address (max_per_address)"), False
        return None, self.anonymous >= self.max_anonymous

    def open(self, address: str, probation: bool) -> None:
        """Count a session that has just opened (not logged in)."""
        self.sessions += 1
        if probation:
            self.probation += 1
        else:
            self.anonymous += 1
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def logged_in(self, address: str, probation: bool) -> None:
        """A session logged in: it leaves the anonymous (or probation) budget."""
        if probation:
            self.probation -= 1
        else:
            self.anonymous -= 1
        self._release(address)

    def close(self, address: str, *, logged_in: bool, probation: bool) -> None:
        """Count a session that has closed."""
        self.sessions -= 1
        if not logged_in:
            self.logged_in(address, probation)

    def _release(self, address: str) -> None:
        n = self._per_address.get(address, 0) - 1
        if n > 0:
            self._per_address[address] = n
        else:
            self._per_address.pop(address, None)
