"""Open-loop FIX order load for ``tickline loadgen --protocol fix|both``.

The same method as the binary load (:mod:`tickline.loadgen`): order ``i`` has the planned send
time ``start + i / rate``, the round trip runs from the planned time to the first
ExecutionReport (or OrderCancelReject) answering it, so coordinated omission is corrected; the
first ``warmup`` seconds are not counted. Orders are spread round-robin over FIX sessions
(SenderCompID:Password pairs, by default the market-maker demo sessions MM1..MM4: separate
accounts, so they trade with each other). The mix: passive GTC limit orders near a mid price
until a session has ``orders_per_session`` resting, then 50% cancels of its oldest resting
order, 35% new passive orders and 15% crossing IOC orders. Resting orders are mass-cancelled at
the end.

The client is an asyncio protocol that writes each wake-up's messages of a session with one
write and extracts only the fields it needs from the answers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any

from tickline.bench.report import machine, percentiles
from tickline.core.gctune import freeze_after_warmup, realtime_thresholds
from tickline.core.metrics import LatencyRecorder
from tickline.gateway.fix import codec
from tickline.loadgen import pace

__all__ = ["DEFAULT_SESSIONS", "run_fix_load"]

DEFAULT_SESSIONS = "MM1:mm1-key-0,MM2:mm2-key-0,MM3:mm3-key-0,MM4:mm4-key-0"


def _field(raw: bytes, tag: bytes) -> bytes:
    """The value of ``tag`` (given as b"\\x01NN=") in ``raw``, or b""."""
    i = raw.find(tag)
    if i < 0:
        return b""
    i += len(tag)
    return raw[i:raw.find(b"\x01", i)]


class _Conn(asyncio.Protocol):
    def __init__(self, sender: str, target: str) -> None:
        self.sender = sender
        self.encoder = codec.Encoder(sender, target)
        self.reader = codec.FixReader()
        self.transport: asyncio.Transport | None = None
        self.seq = 1
        self.logged_on = asyncio.Event()
        self.closed = asyncio.Event()
        self.on_message: Any = None
        self.out = bytearray()
        self.inflight: dict[bytes, int] = {}
        self.resting: deque[bytes] = deque()
        self.live: set[bytes] = set()
        self.rng = random.Random(sender)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        for item in self.reader.feed(data):
            if not isinstance(item, bytes):
                continue
            mt = _field(item, b"\x0135=")
            if mt == b"A":
                self.logged_on.set()
            elif mt == b"1":
                self.queue("0", b"112=%s\x01" % _field(item, b"\x01112="))
                self.flush()
            elif self.on_message is not None:
                self.on_message(self, mt, item)

    def queue(self, msg_type: str, body: bytes) -> None:
        self.out += self.encoder.encode(msg_type, self.seq, body)
        self.seq += 1

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(bytes(self.out))
            self.out.clear()


class _FixRun:
    def __init__(self, cfg: Any, conns: list[_Conn], symbol: str, price_decimals: int) -> None:
        self.cfg = cfg
        self.conns = conns
        self.symbol = symbol.encode()
        self.decimals = price_decimals
        self.latency = LatencyRecorder("rtt_ns")
        self.send_lag = LatencyRecorder("send_lag_ns")
        self.total = max(1, int(cfg.rate * cfg.duration))
        self.measure_from = int(cfg.rate * cfg.warmup) if cfg.warmup < cfg.duration else 0
        self.first_measured = 0
        self.planned: dict[bytes, tuple[int, int]] = {}  # clid -> (planned ns, order index)
        self.next_i = 0
        self.start_ns = 0
        self.completed = 0
        self.measured = 0
        self.rejects = 0
        self.fills = 0
        self.last_ns = 0
        self.done = asyncio.Event()
        self.wake = asyncio.Event()
        # ClOrdIDs unique across runs (the engine refuses an id it saw recently)
        self.prefix = b"L%x-" % (time.time_ns() // 1_000_000 % (1 << 40))
        for c in conns:
            c.on_message = self.on_message

    def on_message(self, c: _Conn, mt: bytes, raw: bytes) -> None:
        clid = _field(raw, b"\x0111=")
        if mt == b"8":
            exec_type = _field(raw, b"\x01150=")
            if exec_type == b"0":
                c.live.add(clid)
                c.resting.append(clid)
            elif exec_type == b"F":
                self.fills += 1
                if _field(raw, b"\x0139=") == b"2":
                    c.live.discard(clid)
            elif exec_type == b"4":
                c.live.discard(_field(raw, b"\x0141=") or clid)
                c.live.discard(clid)
            elif exec_type == b"8":
                self.rejects += 1
        elif mt == b"9":
            self.rejects += 1
        else:
            return
        got = self.planned.pop(clid, None)
        if got is None:
            return
        c.inflight.pop(clid, None)
        now = time.perf_counter_ns()
        self.last_ns = now
        self.completed += 1
        planned, i = got
        if i >= self.measure_from:
            if not self.first_measured:
                self.first_measured = planned
            self.latency.record(now - planned)
            self.measured += 1
        if self.completed >= self.total:
            self.done.set()
        self.wake.set()

    def _order(self, c: _Conn, i: int) -> tuple[str, bytes, bytes]:
        rng = c.rng
        clid = b"%s%d" % (self.prefix, i)
        per = self.cfg.orders_per_session
        mid = 10_000
        if len(c.live) >= per and rng.random() < 0.5:
            while c.resting:
                old = c.resting.popleft()
                if old in c.live:
                    c.live.discard(old)
                    return "F", clid, b"11=%s\x0141=%s\x0155=%s\x0154=1\x0160=%s\x01" % (
                        clid, old, self.symbol, codec.sending_time())
        side = 1 if i % 2 else 2
        if rng.random() < 0.15:  # crossing IOC
            px = mid + 60 if side == 1 else mid - 60
            tif = b"3"
        else:
            off = rng.randint(1, self.cfg.spread_ticks)
            px = mid - off if side == 1 else mid + off
            tif = b"1"
        price = b"%d.%02d" % divmod(px, 100) if self.decimals == 2 else b"%d" % px
        return "D", clid, (b"11=%s\x0155=%s\x0154=%d\x0160=%s\x0138=1\x0140=2\x0144=%s\x01"
                           b"59=%s\x01" % (clid, self.symbol, side, codec.sending_time(),
                                           price, tif))

    async def sender(self) -> None:
        conns = self.conns
        n = len(conns)
        window = self.cfg.window
        clock = time.perf_counter_ns
        self.start_ns = start = clock()
        period = 1e9 / self.cfg.rate
        sleep_wait = getattr(self.cfg, "wait", "spin") == "sleep"
        while self.next_i < self.total:
            now = clock()
            due = min(self.total, int((now - start) / period) + 1)
            i = self.next_i
            dirty: set[_Conn] = set()
            while i < due:
                c = conns[i % n]
                if len(c.inflight) >= window:
                    break
                mt, clid, body = self._order(c, i)
                planned = start + int(i * period)
                self.planned[clid] = (planned, i)
                c.inflight[clid] = planned
                self.send_lag.record(now - planned)
                c.queue(mt, body)
                dirty.add(c)
                i += 1
            for c in dirty:
                c.flush()
            self.next_i = i
            if i >= self.total:
                break
            if i < due:
                self.wake.clear()
                await self.wake.wait()
                continue
            await pace(start + i * period, self.cfg.send_interval, sleep_wait)


async def run_fix_load(cfg: Any, fix_port: int, sessions: str = DEFAULT_SESSIONS,
                       target: str = "TICKLINE", price_decimals: int = 2) -> dict[str, Any]:
    """Run the FIX load of ``cfg`` (a :class:`tickline.loadgen.LoadConfig`: rate, duration,
    warmup, window, symbol) on ``fix_port``; the results dict (same keys as the binary
    load's)."""
    loop = asyncio.get_running_loop()
    pairs = [s.split(":", 1) for s in sessions.split(",") if s]
    conns: list[_Conn] = []
    for sender, password in pairs:
        conn = _Conn(sender, target)
        await loop.create_connection(lambda c=conn: c, cfg.host, fix_port)  # type: ignore[misc]
        conn.queue("A", b"98=0\x01108=30\x01141=Y\x01554=%s\x01" % password.encode())
        conn.flush()
        conns.append(conn)
    await asyncio.wait_for(asyncio.gather(*(c.logged_on.wait() for c in conns)), 10)
    symbol = cfg.symbol or "AAPL"
    run = _FixRun(cfg, conns, symbol, price_decimals)
    # as the binary load does: this process's own collector pauses would count as server
    # latency, so the warm heap is frozen and the thresholds raised for the run
    freeze_after_warmup()
    with realtime_thresholds():
        sender_task = asyncio.create_task(run.sender())
        try:
            await asyncio.wait_for(run.done.wait(), cfg.duration + 30)
        except TimeoutError:
            pass
    if not sender_task.done():
        sender_task.cancel()
    unanswered = len(run.planned) + (run.total - run.next_i)
    for c in conns:
        c.queue("q", b"11=END\x01530=7\x0160=%s\x01" % codec.sending_time())
        c.queue("5", b"")
        c.flush()
    for c in conns:
        try:
            await asyncio.wait_for(c.closed.wait(), 5)
        except TimeoutError:
            if c.transport is not None:
                c.transport.close()
    window_s = (run.last_ns - run.first_measured) / 1e9 if run.first_measured else 0.0
    pct = percentiles(run.latency.histogram, 1000.0) if run.measured else {
        "p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "p99_99": 0.0, "max": 0.0}
    return {
        "protocol": "fix",
        "offered_rate": cfg.rate,
        "achieved_rate": round(run.measured / window_s, 1) if window_s > 0 else 0.0,
        "errors": unanswered,
        "unanswered": unanswered,
        "rejects": run.rejects,
        "fills": run.fills,
        "orders": run.total,
        "completed": run.completed,
        "measured": run.measured,
        "duration_s": cfg.duration,
        "warmup_s": cfg.warmup,
        "sessions": len(conns),
        "symbol": symbol,
        "host": cfg.host,
        "port": fix_port,
        "latency_us": {k: round(float(v), 1) for k, v in pct.items() if k != "count"},
        "send_lag_us": {k: round(float(v), 1) for k, v in
                        percentiles(run.send_lag.histogram, 1000.0).items() if k != "count"},
        "machine": machine(),
    }
