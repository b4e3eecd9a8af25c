"""The admin endpoint: halt and resume a symbol, the per-account kill switch, over HTTP.

``POST /admin/<action>?<target>`` on the HTTP port, with ``Authorization: Bearer <key>``
where the key is ``[server] admin_key`` in the configuration. No key configured = the
endpoint is off (404 for every ``/admin`` path). Actions:

=================================  =========================================================
``POST /admin/halt?symbol=S``      halt trading in ``S`` (``SetTradingStatus``)
``POST /admin/resume?symbol=S``    resume trading in ``S``
``POST /admin/kill?account=N``     the kill switch: cancel all of account ``N``'s orders and
                                   reject its new ones (``SetAccountStatus enabled=false``)
``POST /admin/enable?account=N``   lift the kill switch
=================================  =========================================================

Each action is one journaled command, like any order, so a replay reproduces it; the answer
(``200``, JSON) comes once it is journaled and carries its sequence number and what it did
(``cancelled``: orders cancelled by a kill). Every action appears on the market-data status
stream: a halt or resume as a ``StatusUpdate`` on ``status.SYM``, a kill or enable as an
``AccountStatusUpdate`` on every symbol's ``status.SYM``. A missing or
wrong key gets ``401`` and changes nothing (keys are compared in constant time); a bad target
gets ``400`` naming it. ``tickline admin halt|resume|kill|enable`` is the command-line client.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from tickline.exchange import Exchange, ExchangeBusy, ExchangeStopped
from tickline.matching import (
    Cancelled,
    Command,
    Event,
    Rejected,
    SetAccountStatus,
    SetTradingStatus,
    reject_reason_name,
)
from tickline.stream.reports import ExecReport

__all__ = ["ACTIONS", "AdminEndpoint", "AdminError"]

ACTIONS = ("halt", "resume", "kill", "enable")


class AdminError(Exception):
    """An admin request refused: ``status`` is the HTTP status, ``code`` a stable name."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class AdminEndpoint:
    """Authenticates and carries out admin actions on one exchange."""

    def __init__(self, exchange: Exchange, key: str | None, accounts: set[int]) -> None:
        self.exchange = exchange
        self.key = key or None
        self.accounts = accounts
        self.actions = 0
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def authorize(self, headers: Mapping[str, str]) -> None:
        """Raise :class:`AdminError` (401) unless ``Authorization: Bearer <admin key>``."""
        assert self.key is not None
        given = headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self.key.encode()):
            self.refused += 1
            raise AdminError(401, "unauthorized", "admin actions need 'Authorization: "
                                                  "Bearer <server.admin_key>'")

    def command(self, action: str, query: str) -> Command:
        """The command for ``action`` and its query string; :class:`AdminError` (400/404)."""
        try:
            params = parse_qs(query, strict_parsing=bool(query), max_num_fields=4)
        except ValueError:
            raise AdminError(400, "bad_query", f"malformed query string {query[:100]!r}") from None

        def one(name: str) -> str:
            values = params.get(name)
            if not values or len(values) != 1:
                raise AdminError(400, "bad_target", f"{action} needs exactly one '{name}'")
            return values[0]

        if action in ("halt", "resume"):
            symbol = one("symbol")
            if symbol not in {i.symbol for i in self.exchange.instruments}:
                raise AdminError(400, "unknown_symbol", f"unknown symbol {symbol[:64]!r}")
            return SetTradingStatus(symbol=symbol, halted=action == "halt")
        if action in ("kill", "enable"):
            text = one("account")
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise AdminError(400, "bad_target", f"account must be an integer id, got "
                                                    f"{text[:40]!r}")
            account = int(text)
            if account not in self.accounts:
                raise AdminError(400, "unknown_account", f"no account {account} configured")
            return SetAccountStatus(account=account, enabled=action == "enable")
        raise AdminError(404, "not_found", f"no admin action {action[:40]!r}; one of "
                                           f"{', '.join(ACTIONS)}")

    async def run(self, action: str, query: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """Authorize, submit and await the journaled outcome of one action."""
        self.authorize(headers)
        cmd = self.command(action, query)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[Command, list[Event]]] = loop.create_future()

        def reply(c: Command, events: list[Event], _reports: list[ExecReport]) -> None:
            if not done.done():
                done.set_result((c, events))

        try:
            self.exchange.submit(cmd, reply)
        except (ExchangeBusy, ExchangeStopped) as e:
            raise AdminError(503, "unavailable", str(e)) from None
        sequenced, events = await asyncio.wait_for(done, 10.0)
        rejected = [e for e in events if type(e) is Rejected]
        if rejected:
            raise AdminError(409, reject_reason_name(rejected[0].reason).lower(),
                             rejected[0].text)
        self.actions += 1
        return {"action": action, "seq": sequenced.seq,
                "cancelled": sum(1 for e in events if type(e) is Cancelled),
                "command": type(cmd).__name__}
