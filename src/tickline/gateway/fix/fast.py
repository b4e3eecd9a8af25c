"""The FIX session's common case in one compiled call per socket read and one per report.

:class:`Inbound` takes a socket read of a logged-on session and handles, from the front of
the read buffer, every message that is *plain*: framed and checksummed like the framer's fast
branch (:func:`codec.frame_at`), valid in one pass (:func:`codec.parse_valid`), passing the
session rules the common way (:func:`codec.routine`: CompIDs, no PossDupFlag, the expected
MsgSeqNum, a certain SendingTime), and either a Heartbeat or a NewOrderSingle (D),
OrderCancelRequest (F) or OrderCancelReplaceRequest (G) that the application takes as it is
(within ``max_in_flight``, ClOrdIDs within the limit, converted without a refusal, a rate
token there). Each such message's MsgSeqNum is consumed and its command staged exactly as
``FixSession._session_checks`` / ``_application`` would have done. It stops at the first
message that is anything else (admin messages, PossDup, gaps, rejects, refusals, garbled or
incomplete bytes...) and leaves it and everything after it in the reader's buffer, untouched,
for the session's full path, which then decides exactly as if this module did not exist.

The checks that refuse here have no side effect before they refuse: the rate token is taken
last, after the conversion (taking is idempotent on failure: a refused ``take`` at the same
instant refuses again on the full path, which then answers "rate limit exceeded").

:func:`send` is the one send path of an application message (store record, then header and
trailer around the body); :func:`report` builds an ExecutionReport body and sends it with it,
and records the report as delivered, in one call.

This module is compiled with mypyc (``_build.CANDIDATES``): the session's per-message Python
method calls and attribute lookups become native calls into the compiled codec, app and store.
"""

from __future__ import annotations

from tickline.core.ratelimit import TokenBucket
from tickline.gateway.fix import app, codec
from tickline.gateway.fix.codec import Encoder, FixMessage, FixReader
from tickline.gateway.fix.store import SessionStore
from tickline.matching import Command, Instrument
from tickline.stream.reports import ExecReport

__all__ = ["Inbound", "report", "send"]

_MSG_TYPE_BYTES = {t: t.encode() for t in ("8", "9", "j", "r", "W", "X", "Y")}


class Inbound:
    """The fast path of one logged-on session (built at logon): its reader and store, the
    CompIDs it must carry, the account and the application's limits."""

    def __init__(self, reader: FixReader, store: SessionStore, sender: str, target: str,
                 tolerance: float, account: int, instruments: dict[str, Instrument],
                 rate: TokenBucket, max_in_flight: int, clid_limit: int) -> None:
        self.reader = reader
        self.store = store
        self.sender = sender
        self.target = target
        self.tolerance = tolerance
        self.account = account
        self.instruments = instruments
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.clid_limit = clid_limit

    def read(self, data: bytes, now: float, last_rx: float, in_flight: int,
             staged: list[Command], staged_ctx: list[tuple[str, dict[int, str]]]) -> int:
        """Append ``data`` to the reader's buffer and handle the plain messages at its front
        (``now``: the wall clock for SendingTime, ``last_rx``: the rate limiter's time,
        ``in_flight``: requests pending an answer); their commands and (MsgType, values) are
        appended to ``staged`` / ``staged_ctx``. Returns how many messages were handled;
        whatever is left in the buffer is for the full path."""
        reader = self.reader
        buf = reader.buf
        buf += data
        if not reader.fast:
            return 0
        store = self.store
        max_body = reader.max_body
        n = len(buf)
        pos = 0
        count = 0
        while pos < n:
            raw = codec.frame_at(buf, pos, n, max_body)
            if raw is None:
                break
            msg = codec.parse_valid(raw)
            if msg is None:
                break
            expected = store.next_in
            if not codec.routine(msg, self.sender, self.target, expected, self.tolerance,
                                 now):
                break
            mt = msg.msg_type
            if mt != "0":  # a Heartbeat: consumed, nothing else
                cmd = self._command(msg, in_flight + len(staged), last_rx)
                if cmd is None:
                    break
                staged.append(cmd)
                staged_ctx.append((mt, msg.values))
            store.received(expected + 1)
            pos += len(raw)
            count += 1
        if pos:
            del buf[:pos]
        return count

    def _command(self, msg: FixMessage, in_flight: int, last_rx: float) -> Command | None:
        """The command of a D/F/G the application takes as it is, else None (the full path
        answers it). Nothing changes before a None."""
        mt = msg.msg_type
        if mt != "D" and mt != "F" and mt != "G":
            return None
        if in_flight >= self.max_in_flight:
            return None
        values = msg.values
        limit = self.clid_limit
        if len(values.get(11, "")) > limit or len(values.get(41, "")) > limit:
            return None
        cmd: Command
        try:
            if mt == "D":
                cmd = app.to_new_order(values, self.account, self.instruments)
            elif mt == "F":
                cmd = app.to_cancel(values, self.account, self.instruments)
            else:
                cmd = app.to_replace(values, self.account, self.instruments)
        except Exception:  # OrderRefused (or anything): the full path does it again, answers
            return None
        if not self.rate.take(last_rx):
            return None
        return cmd


def send(out: bytearray, store: SessionStore, encoder: Encoder, msg_type: str, body: bytes,
         ts: bytes) -> None:
    """Send an application message: stored for resend (under the session's next outbound
    MsgSeqNum), then encoded onto ``out``."""
    seq = store.next_out
    store.sent_app(seq, _MSG_TYPE_BYTES.get(msg_type) or msg_type.encode(), ts, body)
    out += encoder.encode(msg_type, seq, body, now=ts)


def report(out: bytearray, store: SessionStore, encoder: Encoder, r: ExecReport,
           inst: Instrument, clid: str | None, orig_clid: str) -> None:
    """The ExecutionReport for ``r`` (:func:`app.exec_report`, TransactTime = SendingTime =
    now) sent with :func:`send`, and ``r`` recorded as delivered."""
    ts = codec.sending_time()
    send(out, store, encoder, "8", app.exec_report(r, inst, ts, clid=clid, orig_clid=orig_clid),
         ts)
    seq = r.seq
    if seq:
        store.delivered(seq)
