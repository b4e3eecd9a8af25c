"""One FIX 4.4 acceptor connection: the session rules, then the application messages.

Session rules (FIX 4.4 session layer; the QuickFIX acceptance checklist is in docs/fix.md):

* The first message must be a valid Logon (35=A), else the connection is closed. Logon is
  accepted when BeginString is ``FIX.4.4``, TargetCompID (56) is ``[fix] comp_id``,
  SenderCompID (49) is a configured ``[[fix.sessions]]`` entry not logged on already,
  Password (554) is that entry's account key (and Username 553, when sent, its name),
  EncryptMethod (98) is 0 and HeartBtInt (108) is 1..``max_heartbeat_seconds`` (0 accepted:
  no heartbeats). Otherwise: Logout with the reason, then disconnect. ResetSeqNumFlag (141=Y)
  resets both sequence numbers to 1 (answered with 141=Y).
* Garbled messages (framing, BodyLength, CheckSum) are ignored (:mod:`codec`).
* MsgSeqNum (34) too high: ResendRequest (2) for ``expected..0`` once; the out-of-order
  messages are not processed (the peer resends them), except a Logout or a ResendRequest,
  which are answered. Too low without PossDupFlag (43=Y): Logout, disconnect. Too low with
  PossDupFlag: ignored. PossDupFlag without OrigSendingTime (122): Reject 373=1; OrigSendingTime
  after SendingTime: Reject 373=10 and Logout.
* Wrong CompIDs or BeginString after logon: Reject 373=9 (BeginString: none) then Logout and
  disconnect. SendingTime off by more than ``sending_time_tolerance``: Reject 373=10, Logout.
* A message breaking the data dictionary: Reject (35=3) with SessionRejectReason (373),
  RefTagID (371), RefSeqNum (45), RefMsgType (372); its MsgSeqNum is consumed.
* Heartbeat every HeartBtInt seconds of silence; TestRequest after 1.2 x HeartBtInt without
  input, disconnect after 2.4 x. TestRequest is answered with Heartbeat (112 echoed).
* ResendRequest (7..16, 16=0 = to the end): application messages resent from the store with
  PossDupFlag=Y and OrigSendingTime, admin messages replaced by SequenceReset-GapFill.
* SequenceReset: GapFill (123=Y) moves the expected number to NewSeqNo (36) when in sequence;
  Reset moves it regardless; a NewSeqNo below the expected number gets Reject 373=5.
* Logout (5) is answered with Logout, then the connection is closed.

The application side lives in :mod:`tickline.gateway.fix.app` (conversions) and here
(dispatch): D/F/G staged and submitted together at the end of each socket read; H and q via
the venue services; V served from the book (see :mod:`tickline.gateway.fix.marketdata`);
other application MsgTypes: BusinessMessageReject 380=3.

Output is buffered and written once per event-loop turn, after the session store has been
written (a message is stored before the peer can see it, so it can always be resent).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from tickline.config import Account, FixSessionConfig
from tickline.core.ratelimit import TokenBucket
from tickline.exchange import ExchangeBusy, ExchangeStopped, ExchangeUnavailable
from tickline.gateway.fix import app, codec, fast
from tickline.gateway.fix.codec import FieldError, FixMessage, Garbled
from tickline.gateway.fix.store import SessionStore
from tickline.gateway.submit import submit_all
from tickline.matching import Cancel, Command, Event, NewOrder, RejectReason
from tickline.stream.reports import ExecKind, ExecReport, OrderState
from tickline.stream.routing import ReportPort
from tickline.venue import ResumeError

if TYPE_CHECKING:
    from tickline.gateway.fix.gateway import FixGateway

log = logging.getLogger("tickline.gateway.fix")

__all__ = ["FixSession"]

_ADMIN = frozenset("0123456A")
_APP_HANDLED = frozenset("DFGHqV")
_REJECTED = int(ExecKind.REJECTED)
_THROTTLED = int(RejectReason.THROTTLED)
_RATE_LIMITED = int(RejectReason.RATE_LIMITED)


class FixSession(asyncio.Protocol):
    """One TCP connection of the FIX acceptor. All methods run on the gateway's loop."""

    def __init__(self, gateway: FixGateway) -> None:
        self.gw = gateway
        self.transport: asyncio.Transport | None = None
        self.reader = codec.FixReader()
        self.peer = "?"
        self.out = bytearray()
        self.dirty = False
        self.closed = False
        self.logged_on = False
        self.logout_sent = False
        self.entry: FixSessionConfig | None = None
        self.account: Account | None = None
        self.store: SessionStore | None = None
        self.encoder: codec.Encoder | None = None
        self.port: ReportPort | None = None
        self.heartbeat = 0
        now = time.monotonic()
        self.last_rx = self.last_tx = now
        self.test_pending = False
        self.resend_until = 0  # a ResendRequest we sent is open up to this MsgSeqNum
        self.staged: list[Command] = []
        self.staged_ctx: list[tuple[str, dict[int, str]]] = []
        # per request in flight, what its answer needs, as atoms the gc does not keep
        # tracking: "D" for an order, (MsgType, ClOrdID, OrigClOrdID, OrderID) otherwise
        self.pending: deque[str | tuple[str, str, str, str]] = deque()
        limits = gateway.config.limits
        self.rate = TokenBucket(limits.orders_per_second, limits.burst, now)
        self.max_in_flight = limits.max_in_flight
        self.clid_limit = limits.max_client_order_id_bytes
        self.held: list[ExecReport] | None = None
        self.md_subscriptions: dict[str, object] = {}
        self.status_seq = 0
        self.login_timer: asyncio.TimerHandle | None = None
        self.inbound: fast.Inbound | None = None  # the compiled common case, from logon on

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.transport.set_write_buffer_limits(high=self.gw.max_output_bytes)
        self.gw.sessions.add(self)
        self.gw.connections += 1
        if not self.gw.accepting:
            self.abort()
            return
        self.login_timer = asyncio.get_running_loop().call_later(
            self.gw.config.limits.login_timeout_seconds, self._login_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def pause_writing(self) -> None:
        self.gw.slow_consumer_disconnects += 1
        log.warning("fix session %s: slow consumer, disconnecting", self.peer)
        self.abort()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.gw.bytes_in += len(data)
        self.last_rx = time.monotonic()
        self.test_pending = False
        inbound = self.inbound
        if (inbound is not None and not self.resend_until and self.gw.accepting
                and not self.logout_sent):
            # the plain messages at the front of the buffer in one compiled call (what the
            # full path below decides for them); it leaves the first other one and the rest
            self.gw.messages_in += inbound.read(data, time.time(), self.last_rx,
                                                len(self.pending), self.staged,
                                                self.staged_ctx)
            data = b""
            if not self.reader.buf:
                if self.staged:
                    self._submit_staged()
                return
        for item in self.reader.feed(data):
            if self.closed:
                return
            if isinstance(item, Garbled):
                self.gw.garbled += 1
                log.info("fix session %s: garbled message ignored: %s", self.peer, item.reason)
                continue
            self.gw.messages_in += 1
            self._message(item)
        if self.staged:
            self._submit_staged()

    # -- session layer ---------------------------------------------------------------------

    def _message(self, raw: bytes) -> None:
        if self.logged_on:
            valid = codec.parse_valid(raw)  # the common case in one pass, else None
            if valid is not None:
                store = self.store
                entry = self.entry
                assert store is not None and entry is not None
                expected = store.next_in
                if codec.routine(valid, entry.sender_comp_id, self.gw.comp_id, expected,
                                 self.gw.config.fix.sending_time_tolerance, time.time()):
                    # what _session_checks decides for it, in one compiled call
                    self._consume(expected)
                    self._dispatch(valid)
                    return
                self._session_checks(valid)
                return
        try:
            msg = codec.parse(raw)
        except FieldError as e:
            if not self.logged_on:
                self.abort()
                return
            seq = _int_field(raw, b"\x0134=")
            self.gw.session_rejects_sent += 1
            self._reject(str(seq), _raw_field(raw, b"\x0135="), e)
            if seq == self.store.next_in:  # type: ignore[union-attr]
                self._consume(seq)
            return
        if not self.logged_on:
            self._logon(msg)
            return
        if msg.values.get(8) != "FIX.4.4":
            self._logout("incorrect BeginString", close=True)
            return
        try:
            codec.validate(msg)
        except FieldError as e:
            self._invalid(msg, e)
            return
        self._session_checks(msg)

    def _session_checks(self, msg: FixMessage) -> None:
        """The session rules for a valid message of a logged-on session (CompIDs, PossDup,
        SendingTime, MsgSeqNum), then the message itself when it is the expected one."""
        values = msg.values
        mt = msg.msg_type
        assert self.entry is not None and self.store is not None
        if values.get(49) != self.entry.sender_comp_id or values.get(56) != self.gw.comp_id:
            self._reject(values.get(34, ""), mt,
                         FieldError(codec.COMPID, 49 if values.get(49) !=
                                    self.entry.sender_comp_id else 56, "CompID problem"))
            self._logout("CompID problem", close=True)
            return
        seq = int(values[34])
        store = self.store
        expected = store.next_in
        poss_dup = values.get(43) == "Y"
        if poss_dup and mt != "4":
            orig = values.get(122)
            if orig is None:
                self._reject(values[34], mt, FieldError(codec.REQUIRED_MISSING, 122,
                                                        "OrigSendingTime (122) required "
                                                        "with PossDupFlag"))
                if seq == expected:
                    self._consume(seq)
                return
            if orig > values[52]:
                self._reject(values[34], mt, FieldError(codec.SENDING_TIME, 122,
                                                        "OrigSendingTime after SendingTime"))
                self._logout("SendingTime accuracy problem", close=True)
                return
        elif not self._sending_time_ok(values[52]):
            self._reject(values[34], mt, FieldError(codec.SENDING_TIME, 52,
                                                    "SendingTime accuracy problem"))
            self._logout("SendingTime accuracy problem", close=True)
            return
        if mt == "4":
            self._sequence_reset(msg, seq, expected)
            return
        if seq > expected:
            if self.resend_until < seq:
                self.resend_until = seq
                self.send_admin("2", b"7=%d\x0116=0\x01" % expected)
            self.gw.gaps += 1
            if mt == "5":
                self._on_logout()
            elif mt == "2":
                self._on_resend_request(values)
            return
        if seq < expected:
            if poss_dup:
                return  # already seen: ignored
            self._logout(f"MsgSeqNum too low, expecting {expected} but received {seq}",
                         close=True)
            return
        self._consume(seq)
        self._dispatch(msg)

    def _consume(self, seq: int) -> None:
        assert self.store is not None
        self.store.received(seq + 1)
        if self.resend_until and seq >= self.resend_until:
            self.resend_until = 0

    def _invalid(self, msg: FixMessage, e: FieldError) -> None:
        """A message breaking the dictionary: Reject, consume its MsgSeqNum when it is the
        expected one (a gap is still a gap)."""
        assert self.store is not None
        self.gw.session_rejects_sent += 1
        seq_text = msg.values.get(34, "")
        self._reject(seq_text, msg.msg_type, e)
        if seq_text.isdecimal() and int(seq_text) == self.store.next_in:
            self._consume(int(seq_text))

    def _reject(self, ref_seq: str, ref_type: str, e: FieldError) -> None:
        body = b"45=%s\x01" % (ref_seq or "0").encode("latin-1")
        if e.tag:
            body += b"371=%d\x01" % e.tag
        if ref_type:
            body += b"372=%s\x01" % ref_type.encode("latin-1")
        body += b"373=%d\x0158=%s\x01" % (e.reason, app._text(e.text))
        self.send_admin("3", body)

    def _sending_time_ok(self, value: str) -> bool:
        tolerance = self.gw.config.fix.sending_time_tolerance
        if codec.sending_time_certain(value, tolerance, time.time()):
            return True  # every instant of that second is within the tolerance of now
        try:
            t = codec.parse_timestamp(value)
        except (ValueError, IndexError):
            return False
        return abs(time.time() - t) <= self.gw.config.fix.sending_time_tolerance

    def _logon(self, msg: FixMessage) -> None:
        gw = self.gw
        values = msg.values
        if msg.msg_type != "A":
            log.info("fix session %s: first message is %r, not Logon: closed", self.peer,
                     msg.msg_type)
            gw.logon_failures += 1
            self.abort()
            return
        try:
            codec.validate(msg)
        except FieldError as e:
            gw.logon_failures += 1
            self._refuse(values, f"invalid Logon: {e.text}")
            return
        sender = values.get(49, "")
        entry = gw.entries.get(sender)
        problem = ""
        account: Account | None = None
        if values.get(8) != "FIX.4.4":
            problem = "BeginString must be FIX.4.4"
        elif values.get(56) != gw.comp_id:
            problem = f"unknown TargetCompID {values.get(56)!r}"
        elif entry is None:
            problem = f"unknown SenderCompID {sender!r}"
        else:
            account = gw.accounts[entry.account]
            password = values.get(554, "")
            if not hmac.compare_digest(password.encode(), account.key.encode()):
                problem = "wrong Password (554)"
            elif values.get(553) not in (None, account.name):
                problem = "wrong Username (553)"
        hb_text = values.get(108, "")
        if not problem and (values.get(98) != "0" or not hb_text.isdecimal()
                            or int(hb_text) > gw.config.fix.max_heartbeat_seconds):
            problem = "EncryptMethod (98) must be 0 and HeartBtInt (108) within limits"
        if not problem and not self._sending_time_ok(values.get(52, "")):
            problem = "SendingTime accuracy problem"
        if not problem and sender in gw.active:
            problem = f"session {sender!r} is already logged on"
        if problem or entry is None or account is None:
            gw.logon_failures += 1
            log.info("fix session %s: logon refused: %s", self.peer, problem)
            self._refuse(values, problem)
            return
        store = gw.store_for(sender)
        reset = values.get(141) == "Y"
        if reset:
            store.reset()
        seq = int(values[34])
        if seq < store.next_in:
            self.store = store
            self.encoder = codec.Encoder(gw.comp_id, sender)
            self._logout(f"MsgSeqNum too low, expecting {store.next_in} but received {seq}",
                         close=True)
            gw.logon_failures += 1
            return
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        self.entry = entry
        self.account = account
        self.store = store
        self.encoder = codec.Encoder(gw.comp_id, sender)
        self.heartbeat = int(hb_text)
        self.logged_on = True
        gw.active[sender] = self
        self.inbound = fast.Inbound(self.reader, store, sender, gw.comp_id,
                                    gw.config.fix.sending_time_tolerance, account.id,
                                    gw.instruments, self.rate, self.max_in_flight,
                                    self.clid_limit)
        gw.logons += 1
        answer = b"98=0\x01108=%d\x01" % self.heartbeat
        if reset:
            answer += b"141=Y\x01"
        self.send_admin("A", answer)
        if seq > store.next_in:
            self.resend_until = seq
            self.send_admin("2", b"7=%d\x0116=0\x01" % store.next_in)
        else:
            self._consume(seq)
        self._attach(account)

    def _refuse(self, values: dict[int, str], text: str) -> None:
        """Logout with ``text`` to a connection whose Logon is refused, then close (the
        Logout carries MsgSeqNum 1 of a session that never started)."""
        sender = values.get(49, "?")
        target = values.get(56, self.gw.comp_id)
        enc = codec.Encoder(target, sender)
        self.out += enc.encode("5", 1, b"58=%s\x01" % app._text(text))
        self.close_after_flush()

    def _attach(self, account: Account) -> None:
        """Route this account's reports here; deliver the ones it missed since the report
        this session delivered last (kept in the store: restarts and reconnects lose none)."""
        gw = self.gw
        store = self.store
        assert store is not None
        last = gw.exchange.reports.last_seq(account.id)
        if store.last_report == 0 and not store.sent:
            store.delivered(last)  # a new session starts from now, not from history
        after = min(store.last_report, last)
        missed: list[ExecReport] | None = []
        if after < last:
            try:
                last, missed = gw.services.resume(account.id, after)
            except ResumeError as e:
                log.warning("fix session %s: cannot deliver missed reports: %s", self.peer, e)
                missed = []
        self.port = gw.exchange.router.attach(account.id, self._unsolicited)
        if missed is None:
            self.held = []
            asyncio.get_running_loop().create_task(self._resume(account.id, after, last))
        else:
            for r in missed:
                self._report(r)

    async def _resume(self, account: int, after: int, last: int) -> None:
        try:
            missed = await self.gw.services.missed(account, after, last)
        except Exception as e:
            log.error("fix session %s: resume from the journal failed: %s", self.peer, e)
            missed = []
        held = self.held or []
        self.held = None
        for r in missed:
            self._report(r)
        for r in held:
            self._report(r)

    def _sequence_reset(self, msg: FixMessage, seq: int, expected: int) -> None:
        assert self.store is not None
        values = msg.values
        new = int(values.get(36, "0"))
        gap_fill = values.get(123) == "Y"
        if gap_fill:
            if seq > expected:
                if self.resend_until < seq:
                    self.resend_until = seq
                    self.send_admin("2", b"7=%d\x0116=0\x01" % expected)
                return
            if seq < expected:
                if values.get(43) != "Y":
                    self._logout(f"MsgSeqNum too low, expecting {expected} but received {seq}",
                                 close=True)
                return
        if new < expected:
            self._reject(values[34], "4", FieldError(codec.BAD_VALUE, 36,
                                                     f"NewSeqNo {new} below the expected "
                                                     f"{expected}"))
            return
        self.store.received(new)
        if self.resend_until and new > self.resend_until:
            self.resend_until = 0

    def _dispatch(self, msg: FixMessage) -> None:
        mt = msg.msg_type
        if mt in _APP_HANDLED:  # the common case first
            self._application(msg)
            return
        if mt == "0":
            return
        if mt == "1":
            self.send_admin("0", b"112=%s\x01" % msg.values.get(112, "").encode("latin-1"))
        elif mt == "2":
            self._on_resend_request(msg.values)
        elif mt == "5":
            self._on_logout()
        elif mt == "3":
            self.gw.rejects_received += 1
        elif mt == "A":
            self._reject(msg.values[34], "A", FieldError(codec.BAD_VALUE, 35,
                                                         "already logged on"))
        else:
            self.gw.business_rejects += 1
            self.send_app("j", app.business_reject(msg.values[34], mt, 3,
                                                   f"unsupported message type {mt}"))

    def _on_logout(self) -> None:
        if not self.logout_sent:
            self.send_admin("5", b"")
        self.close_after_flush()

    def _logout(self, text: str, *, close: bool) -> None:
        """Send Logout (``text``); ``close``: disconnect after it (protocol violations)."""
        self.logout_sent = True
        self.send_admin("5", b"58=%s\x01" % app._text(text))
        if close:
            self.close_after_flush()

    def _on_resend_request(self, values: dict[int, str]) -> None:
        store = self.store
        enc = self.encoder
        assert store is not None and enc is not None
        begin = int(values.get(7, "1") or 1)
        end = int(values.get(16, "0") or 0)
        last = store.next_out - 1
        if end == 0 or end > last:
            end = last
        begin = max(begin, 1)
        self.gw.resend_requests += 1
        now = codec.sending_time()
        gap_start = 0
        seq = begin
        messages = store.stored(begin, end)
        while seq <= end:
            stored = messages.get(seq)
            if stored is None:
                if not gap_start:
                    gap_start = seq
            else:
                if gap_start:
                    self._gap_fill(gap_start, seq, now)
                    gap_start = 0
                mt, ts, body = stored
                self.out += enc.encode(mt.decode(), seq, body, now=now, poss_dup=ts)
                self.gw.messages_resent += 1
            seq += 1
        if gap_start:
            self._gap_fill(gap_start, end + 1, now)
        self._mark()

    def _gap_fill(self, seq: int, new: int, now: bytes) -> None:
        assert self.encoder is not None
        self.out += self.encoder.encode("4", seq, b"123=Y\x0136=%d\x01" % new, now=now,
                                        poss_dup=now)

    def _login_expired(self) -> None:
        self.login_timer = None
        if not self.logged_on and not self.closed:
            self.gw.login_timeouts += 1
            self.abort()

    def tick(self, now: float) -> None:
        """Heartbeat timer (the gateway calls it every second)."""
        hb = self.heartbeat
        if not self.logged_on or self.closed or hb <= 0:
            return
        silent = now - self.last_rx
        if silent > 2.4 * hb:
            self.gw.heartbeat_timeouts += 1
            self._logout("heartbeat timeout", close=True)
            return
        if silent > 1.2 * hb and not self.test_pending:
            self.test_pending = True
            self.send_admin("1", b"112=TEST%d\x01" % int(now * 1000))
        elif now - self.last_tx >= hb and not self.dirty:
            self.send_admin("0", b"")

    # -- application -----------------------------------------------------------------------

    def _application(self, msg: FixMessage) -> None:
        gw = self.gw
        account = self.account
        assert account is not None
        mt = msg.msg_type
        values = msg.values
        if mt == "V":
            gw.marketdata.request(self, msg)
            return
        if mt == "H":
            self._order_status(values)
            return
        if mt == "q":
            self._mass_cancel(values)
            return
        if not gw.accepting or self.logout_sent:
            self._refuse_order(mt, values, _THROTTLED, "server is stopping")
            return
        if len(self.pending) + len(self.staged) >= self.max_in_flight:
            self._refuse_order(mt, values, _THROTTLED,
                               f"{self.max_in_flight} requests in flight (max_in_flight)")
            return
        if not self.rate.take(self.last_rx):
            gw.rate_limited += 1
            self._refuse_order(mt, values, _RATE_LIMITED, "rate limit exceeded")
            return
        clid_limit = self.clid_limit
        if len(values.get(11, "")) > clid_limit or len(values.get(41, "")) > clid_limit:
            self._refuse_order(mt, values, int(RejectReason.CLIENT_ORDER_ID_TOO_LONG),
                               f"ClOrdID longer than {clid_limit} bytes")
            return
        try:
            if mt == "D":
                cmd: Command = app.to_new_order(values, account.id, gw.instruments)
            elif mt == "F":
                cmd = app.to_cancel(values, account.id, gw.instruments)
            else:
                cmd = app.to_replace(values, account.id, gw.instruments)
        except app.OrderRefused as e:
            self._refuse_order(mt, values, e.reason, e.text)
            return
        self.staged.append(cmd)
        self.staged_ctx.append((mt, values))

    def _refuse_order(self, mt: str, values: dict[int, str], reason: int, text: str) -> None:
        self.gw.orders_refused += 1
        if mt == "D":
            self.status_seq += 1
            assert self.account is not None
            self.send_app("8", app.refused_report(values, self.account.id,
                                                  f"R{self.account.id}-{app.unique_ns()}",
                                                  reason, text, codec.sending_time()))
        else:
            self.send_app("9", app.cancel_reject(values, "1" if mt == "F" else "2", reason,
                                                 text))

    def _submit_staged(self) -> None:
        cmds = self.staged
        ctx = self.staged_ctx
        self.staged = []
        self.staged_ctx = []
        n, code, text = submit_all(self.gw.exchange, cmds, self._on_reply, self.port)
        pending = self.pending
        for i in range(n):
            mt, values = ctx[i]
            if mt == "D":
                pending.append("D")  # its reports carry everything the answer needs
            else:
                pending.append((mt, values.get(11, ""), values.get(41, ""),
                                values.get(37, "")))
        self.gw.orders += n
        for mt, values in ctx[n:]:
            self._refuse_order(mt, values, code, text)

    def _on_reply(self, cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
        entry = self.pending.popleft()
        if self.closed:
            return
        if isinstance(entry, str):  # "D"
            for r in reports:
                self._report(r)
            return
        _mt, clid, orig, oid = entry
        if reports and reports[0].kind == _REJECTED and type(cmd) is not NewOrder:
            first = reports[0]
            values = {11: clid, 41: orig, 37: oid}
            self.send_app("9", app.cancel_reject(values, "1" if type(cmd) is Cancel else "2",
                                                 first.reason, first.text or
                                                 app.reject_name(first.reason),
                                                 first.order_id))
            self._delivered(first)
            for r in reports[1:]:
                self._report(r)
            return
        for r in reports:
            kind = r.kind
            if kind == int(ExecKind.CANCELLED) or kind == int(ExecKind.REPLACED):
                self._report(r, clid=clid, orig_clid=orig)
            else:
                self._report(r)

    def _unsolicited(self, reports: list[ExecReport]) -> None:
        held = self.held
        if held is not None:
            held.extend(reports)
            return
        for r in reports:
            self._report(r)

    def _report(self, r: ExecReport, *, clid: str | None = None, orig_clid: str = "") -> None:
        if self.held is not None:
            self.held.append(r)
            return
        inst = self.gw.instruments.get(r.symbol)
        if inst is None:
            return
        store = self.store
        encoder = self.encoder
        if self.closed or encoder is None or store is None:
            self._delivered(r)  # nothing sent (as send_app would)
            return
        # body, header, store record and delivery in one compiled call (fast.send's path)
        fast.report(self.out, store, encoder, r, inst, clid, orig_clid)
        self.gw.messages_out += 1
        self._mark()

    def _delivered(self, r: ExecReport) -> None:
        if r.seq and self.store is not None:
            self.store.delivered(r.seq)

    def _order_status(self, values: dict[int, str]) -> None:
        account = self.account
        assert account is not None
        oid_text = values.get(37, "")
        order_id = int(oid_text) if oid_text.isdecimal() and len(oid_text) < 19 else 0
        clid = values.get(11, "") if not order_id else ""

        def answer(state: OrderState | None) -> None:
            if self.closed:
                return
            self.status_seq += 1
            exec_id = f"S{account.id}-{app.unique_ns()}"  # unique across sessions too
            ts = codec.sending_time()
            inst = self.gw.instruments.get(state.symbol) if state is not None else None
            if state is None or inst is None:
                self.send_app("8", app.unknown_status_report(values, exec_id, ts))
            else:
                self.send_app("8", app.status_report(state, inst, values, exec_id, ts))

        try:
            self.gw.services.order_status(account.id, order_id, clid, answer)
        except (ExchangeBusy, ExchangeStopped):
            answer(None)

    def _mass_cancel(self, values: dict[int, str]) -> None:
        account = self.account
        assert account is not None
        kind = values.get(530, "")
        symbol = values.get(55, "")
        side_text = values.get(54, "")
        side = int(side_text) if side_text in ("1", "2") else 0
        clid = values.get(11, "")
        reject = ""
        if kind not in ("1", "7"):
            reject = "MassCancelRequestType (530) not supported (1 by symbol, 7 all)"
            why = 99
        elif kind == "1" and symbol not in self.gw.instruments:
            reject = f"unknown symbol {symbol!r}"
            why = 1
        if reject:
            self.send_app("r", b"11=%s\x0137=NONE\x01530=%s\x01531=0\x01532=%d\x0158=%s\x01" % (
                clid.encode("latin-1"), kind.encode("latin-1") or b"7", why,
                app._text(reject)))
            return

        def done(cmd: Command, _events: list[Event], reports: list[ExecReport]) -> None:
            if self.closed:
                return
            if reports and reports[0].kind == _REJECTED:  # cluster: spans shards (413)
                self.send_app("r", b"11=%s\x0137=NONE\x01530=%s\x01531=0\x01532=99\x01"
                                   b"58=%s\x01" % (clid.encode("latin-1"), kind.encode(),
                                                   app._text(reports[0].text)))
                return
            for r in reports:
                self._report(r)
            cancelled = sum(1 for r in reports if r.kind == int(ExecKind.CANCELLED))
            self.send_app("r", b"11=%s\x0137=MC%d\x01530=%s\x01531=%s\x01533=%d\x01" % (
                clid.encode("latin-1"), cmd.seq, kind.encode(), kind.encode(), cancelled))

        try:
            self.gw.services.mass_cancel(account.id, symbol if kind == "1" else "", side, done,
                                         self.port)
        except (ExchangeBusy, ExchangeStopped) as e:  # busy, stopping, 412 (cluster): why
            text = (str(e) if isinstance(e, ExchangeUnavailable) else
                    "exchange busy" if isinstance(e, ExchangeBusy) else "server is stopping")
            self.send_app("r", b"11=%s\x0137=NONE\x01530=%s\x01531=0\x01532=99\x01"
                               b"58=%s\x01" % (clid.encode("latin-1"), kind.encode(),
                                               app._text(text)))

    # -- output ----------------------------------------------------------------------------

    def send_app(self, msg_type: str, body: bytes, ts: bytes | None = None) -> None:
        """Send an application message (stored for resend); ``ts``: its SendingTime, when
        the caller has it already (else the clock's)."""
        store = self.store
        encoder = self.encoder
        if self.closed or encoder is None or store is None:
            return
        fast.send(self.out, store, encoder, msg_type, body,
                  codec.sending_time() if ts is None else ts)
        self.gw.messages_out += 1
        self._mark()

    def send_admin(self, msg_type: str, body: bytes) -> None:
        """Send an admin message (gap-filled on resend)."""
        if self.closed or self.encoder is None or self.store is None:
            return
        store = self.store
        seq = store.next_out
        store.sent_admin(seq)
        self.out += self.encoder.encode(msg_type, seq, body)
        self.gw.messages_out += 1
        self._mark()

    def _mark(self) -> None:
        if not self.dirty:
            self.dirty = True
            self.gw.mark_dirty(self)

    def flush(self) -> None:
        self.dirty = False
        if self.store is not None:
            self.store.flush()  # stored before the peer sees it
        transport = self.transport
        if self.closed or transport is None or not self.out:
            return
        data = bytes(self.out)
        self.out.clear()
        self.gw.bytes_out += len(data)
        self.last_tx = time.monotonic()
        transport.write(data)

    def close_after_flush(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        self._teardown()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self._teardown()

    def _teardown(self) -> None:
        self.closed = True
        if self.login_timer is not None:
            self.login_timer.cancel()
            self.login_timer = None
        gw = self.gw
        if self.store is not None:
            with contextlib.suppress(OSError):
                self.store.flush()
        port = self.port
        if port is not None:
            self.port = None
            entry = self.entry
            if entry is not None and entry.cancel_on_disconnect and self.account is not None:
                with contextlib.suppress(ExchangeStopped):  # a full ring: retried
                    gw.services.cancel_on_disconnect(port, self.account.id)
            port.close()
        gw.marketdata.drop(self)
        if self.entry is not None and gw.active.get(self.entry.sender_comp_id) is self:
            del gw.active[self.entry.sender_comp_id]
        gw.sessions.discard(self)


def _raw_field(raw: bytes, tag: bytes) -> str:
    """The value of ``tag`` (``b"\\x01NN="``) in a message that did not parse, or ""."""
    i = raw.find(tag)
    if i < 0:
        return ""
    i += len(tag)
    return raw[i:raw.find(b"\x01", i)].decode("latin-1")


def _int_field(raw: bytes, tag: bytes) -> int:
    """An integer field of a message that did not parse (0 when it cannot be found)."""
    text = _raw_field(raw, tag)
    return int(text) if text.isdecimal() and len(text) < 19 else 0
