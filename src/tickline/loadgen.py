"""``tickline loadgen``: open-loop order load at a fixed offered rate, with coordinated-omission
correction.

Order ``i`` of the run has a **planned send time** ``start + i / rate``. A sender task wakes
up, sends every order whose planned time has passed (a batch when it is behind schedule —
one write per session per wake-up), and sleeps until the next planned time. Round-trip
latency is measured from the *planned* time to the arrival of the order's
:class:`~tickline.gateway.protocol.Response`, so time an order spent waiting because the
server (or this generator) was slow is counted, not hidden (the "coordinated omission" a
closed-loop client makes). Orders are spread round-robin over ``sessions`` connections. A
session never has more than ``window`` requests in flight; orders beyond it wait locally,
with their clock running.

The mix (pseudo-random from ``seed``; choices depend on which orders are live when the answers
arrive, so two runs differ) keeps the book bounded around a fixed mid price: each
session keeps about ``orders_per_session`` passive GTC orders resting within ``spread_ticks``
of the mid. When below that it adds passive orders; otherwise it sends 50% replaces (move one
of its resting orders to a new passive price), 25% cancels, 10% new passive orders and 15%
crossing IOC orders (self-trade prevention off, so the sessions of the demo account trade
with each other; the IOC's remainder is cancelled and never rests). Fills shrink the resting
set, new orders refill it: the book stays near ``sessions x orders_per_session`` orders, and
the run cancels what it left resting at the end (``leftovers_cancelled`` in the results).

Counted: ``errors`` = requests refused by the gateway (rate limit, in-flight, busy) plus
requests never answered; ``rejects`` = business rejects from the engine (e.g. a cancel that
raced a fill: UNKNOWN_ORDER), which are normal in this mix.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tickline.bench.report import console, machine, percentiles, write_json
from tickline.client import Client, ClientError
from tickline.core.gctune import freeze_after_warmup, realtime_thresholds
from tickline.core.metrics import LatencyRecorder
from tickline.gateway import protocol as p
from tickline.matching import BUY, SELL, Instrument, RejectReason, STPMode, TimeInForce

__all__ = ["LoadConfig", "run", "run_load"]

_GATEWAY_REJECTS = frozenset({int(RejectReason.RATE_LIMITED), int(RejectReason.THROTTLED),
                              int(RejectReason.NOT_AUTHENTICATED)})
_IOC = int(TimeInForce.IOC)
_STP_OFF = int(STPMode.OFF)


@dataclass(slots=True)
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 7001
    key: str = "demo-key-1"
    rate: float = 10_000.0
    duration: float = 10.0
    sessions: int = 4
    symbol: str | None = None
    warmup: float = 1.0
    window: int = 5_000
    orders_per_session: int = 200
    spread_ticks: int = 50
    seed: int = 1
    mid: str | None = None
    wait: str = "spin"
    """How the binary sender waits less than ~1 ms for the next planned send time (with
    ``send_interval`` 0): ``"spin"`` yields to the event loop and checks again (send lag in
    microseconds; the generator keeps a core busy: at 10,000/s ~0.5-0.7 of a core measured
    on the 2-vCPU VM); ``"sleep"`` serves what has arrived, then sleeps in the kernel until
    that time (``time.sleep``, microsecond timers; a response arriving meanwhile waits at
    most that gap, counted in its round trip): a fraction of the CPU, for a generator on
    the same cores as the system under test."""
    send_interval: float = 0.0
    """0: spin to each planned send time (send lag in microseconds, but the sender keeps a
    core busy between sends). > 0: wake every ``send_interval`` seconds and send what is
    due (one write per session): the generator leaves the CPU to the system under test,
    and the waiting is counted in the round trip (measured from the planned time)."""


class _Session:
    """One connection's side of the mix: its resting orders, its in-flight requests."""

    __slots__ = ("client", "inflight", "live_set", "rng", "sent")

    def __init__(self, client: Client, seed: int) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.live_set: set[int] = set()  # resting order ids (approximate: fills come later)
        self.inflight: dict[int, int] = {}  # request id -> planned ns
        self.sent = 0


class _Run:
    def __init__(self, cfg: LoadConfig, sessions: list[_Session], inst: Instrument) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.inst = inst
        self.symbol = inst.symbol
        tick = inst.tick_size
        mid = inst.price_from_str(cfg.mid) if cfg.mid is not None else 10_000 * tick
        self.mid = mid - mid % tick
        self.tick = tick
        self.lot = inst.lot_size
        self.latency = LatencyRecorder("rtt_ns")
        self.send_lag = LatencyRecorder("send_lag_ns")  # this generator's own lateness
        self.total = max(1, int(cfg.rate * cfg.duration))
        self.measure_from = int(cfg.rate * cfg.warmup) if cfg.warmup < cfg.duration else 0
        self.next_i = 0
        self.start_ns = 0
        self.completed = 0
        self.measured = 0
        self.errors = 0
        self.rejects = 0
        self.fills = 0
        self.first_measured_ns = 0
        self.last_response_ns = 0
        self.done = asyncio.Event()
        self.wake = asyncio.Event()
        for s in sessions:
            s.client.on_response = self._make_hook(s)
            s.client.on_report = self._make_report_hook(s)

    # -- responses ---------------------------------------------------------------------------

    def _make_hook(self, s: _Session) -> Any:
        clock = time.perf_counter_ns
        record = self.latency.record
        measure_from_ns = 0

        def on_response(resp: p.Response) -> None:
            nonlocal measure_from_ns
            planned = s.inflight.pop(resp.request_id, None)
            if planned is None:
                return
            now = clock()
            self.completed += 1
            if not measure_from_ns:
                measure_from_ns = self.start_ns + int(self.measure_from * 1e9 / self.cfg.rate)
            reports = resp.reports
            first = reports[0] if reports else None
            if type(first) is p.OrderRejected:
                if first.reason in _GATEWAY_REJECTS:
                    self.errors += 1
                else:
                    self.rejects += 1
                if first.order_id and first.order_id in s.live_set:
                    s.live_set.discard(first.order_id)  # unknown now: forget it
            else:
                self._track(s, reports)
            if planned >= measure_from_ns:
                record(now - planned)
                self.measured += 1
                self.last_response_ns = now
            if self.next_i < self.total and self.wake is not None:
                self.wake.set()
            if self.completed >= self.total:
                self.done.set()

        return on_response

    def _track(self, s: _Session, reports: list[p.Report]) -> None:
        live = s.live_set
        for r in reports:
            if isinstance(r, p.OrderAccepted):
                if r.leaves > 0:
                    live.add(r.order_id)
            elif isinstance(r, p.Fill):
                self.fills += 1
                if r.leaves == 0:
                    live.discard(r.order_id)
            elif isinstance(r, (p.OrderCancelled, p.OrderExpired)):
                live.discard(r.order_id)

    def _make_report_hook(self, s: _Session) -> Any:
        def on_report(r: p.Report) -> None:
            if isinstance(r, p.Fill):
                self.fills += 1
                if r.leaves == 0:
                    s.live_set.discard(r.order_id)
            elif isinstance(r, (p.OrderCancelled, p.OrderExpired)):
                s.live_set.discard(r.order_id)
        return on_report

    # -- requests ----------------------------------------------------------------------------

    def _request(self, s: _Session, i: int) -> p.NewOrderRequest | p.CancelRequest \
            | p.ReplaceRequest:
        rng = s.rng
        cfg = self.cfg
        live = s.live_set
        rid = s.client.next_request_id()
        x = rng.random()
        if len(live) >= cfg.orders_per_session and x < 0.75:
            oid = rng.choice(tuple(live)) if len(live) < 64 else _pick(live, rng)
            if x < 0.5:
                side = BUY if rng.random() < 0.5 else SELL
                return p.ReplaceRequest(request_id=rid, symbol=self.symbol, order_id=oid,
                                        price=self._passive_price(rng, side))
            live.discard(oid)
            return p.CancelRequest(request_id=rid, symbol=self.symbol, order_id=oid)
        side = BUY if rng.random() < 0.5 else SELL
        qty = self.lot * rng.randint(1, 10)
        if len(live) >= cfg.orders_per_session and x >= 0.85:
            # crossing IOC a few ticks through the mid: trades with resting orders or dies
            through = rng.randint(1, 5) * self.tick
            price = self.mid + through if side == BUY else self.mid - through
            return p.NewOrderRequest(request_id=rid, symbol=self.symbol, side=side,
                                     quantity=qty, price=price, tif=_IOC, stp=_STP_OFF)
        return p.NewOrderRequest(request_id=rid, symbol=self.symbol, side=side, quantity=qty,
                                 price=self._passive_price(rng, side))

    def _passive_price(self, rng: random.Random, side: int) -> int:
        off = rng.randint(1, self.cfg.spread_ticks) * self.tick
        return self.mid - off if side == BUY else self.mid + off

    async def sender(self) -> None:
        cfg = self.cfg
        rate = cfg.rate
        sessions = self.sessions
        n = len(sessions)
        window = cfg.window
        clock = time.perf_counter_ns
        self.start_ns = start = clock()
        period_ns = 1e9 / rate
        lag = self.send_lag.record
        sleep_wait = cfg.wait == "sleep"
        while self.next_i < self.total:
            now = clock()
            due = min(self.total, int((now - start) / period_ns) + 1)
            i = self.next_i
            while i < due:
                s = sessions[i % n]
                if len(s.inflight) >= window:
                    break
                req = self._request(s, i)
                planned = start + int(i * period_ns)
                s.inflight[req.request_id] = planned
                lag(now - planned)
                try:
                    s.client.send_nowait(req)
                except ClientError:
                    s.inflight.pop(req.request_id, None)
                    self.errors += 1
                    self.completed += 1
                s.sent += 1
                i += 1
            self.next_i = i
            if i >= self.total:
                break
            if i < due:
                # window full: wait for responses (they set `wake`)
                self.wake.clear()
                await self.wake.wait()
                continue
            await pace(start + i * period_ns, cfg.send_interval, sleep_wait)


async def pace(planned_ns: float, send_interval: float, sleep_wait: bool) -> None:
    """Wait towards ``planned_ns`` (``time.perf_counter_ns``), the planned time of a
    sender's next order; the caller then checks what is due. Both senders (binary here, FIX
    in :mod:`tickline.gateway.fix.load`) wait this way.

    ``send_interval > 0``: a timer of that length (:attr:`LoadConfig.send_interval`).
    Otherwise: the event loop's timers have ~1 ms resolution, so a wait of more than 1.1 ms
    sleeps on a timer until ~1 ms before the planned time, and a shorter one yields to the
    loop (``sleep(0)``, serving the answers that have arrived); then ``sleep_wait``
    (:attr:`LoadConfig.wait` "sleep") blocks in the kernel until the planned time (at most
    1 ms: answers arriving meanwhile wait that long, counted in their round trip), else
    the caller spins back here, keeping its core busy but the send lag in microseconds."""
    if send_interval > 0:
        await asyncio.sleep(send_interval)
        return
    delay = (planned_ns - time.perf_counter_ns()) / 1e9
    if delay > 0.0011:
        await asyncio.sleep(delay - 0.001)
        return
    await asyncio.sleep(0)
    if sleep_wait:
        delay = (planned_ns - time.perf_counter_ns()) / 1e9
        if delay > 0:
            time.sleep(min(delay, 0.001))


async def _cancel_leftovers(sessions: list[_Session], symbol: str) -> int:
    """Cancel what the run left resting, so that runs one after another against the same
    server do not pile up orders. Returns how many cancels succeeded."""
    futs = []
    for s in sessions:
        if s.client.closed:
            continue
        for oid in list(s.live_set):
            futs.append(s.client.send_request(p.CancelRequest(request_id=0, symbol=symbol,
                                                              order_id=oid)))
            if len(futs) % 1000 == 0:
                await asyncio.sleep(0)
    done = 0
    for resp in await asyncio.gather(*futs, return_exceptions=True):
        if isinstance(resp, p.Response) and resp.reports \
                and isinstance(resp.reports[0], p.OrderCancelled):
            done += 1
    return done


def _pick(live: set[int], rng: random.Random) -> int:
    """A pseudo-random member of a large set without building a tuple every time."""
    k = rng.randrange(min(len(live), 32))
    for j, oid in enumerate(live):
        if j == k:
            return oid
    raise AssertionError("unreachable")


async def run_load(cfg: LoadConfig, *, show_progress: bool = True) -> dict[str, Any]:
    """Connect, run the load, wait for the answers, log out; return the results dict."""
    clients = await asyncio.gather(*(
        Client.connect(cfg.host, cfg.port, cfg.key, client_name=f"loadgen-{k}")
        for k in range(cfg.sessions)))
    try:
        first = clients[0]
        symbol = cfg.symbol or next(iter(first.instruments))
        inst = first.instrument(symbol)
        window = cfg.window
        if first.ack is not None:
            window = min(window, first.ack.max_in_flight)
            per_session_rate = cfg.rate / cfg.sessions
            if per_session_rate > first.ack.orders_per_second:
                console.print(f"[yellow]warning: {per_session_rate:,.0f} orders/s per session "
                              f"exceeds the server's limit of "
                              f"{first.ack.orders_per_second:,.0f}; use more --sessions")
        cfg.window = window
        sessions = [_Session(c, cfg.seed * 1000 + k) for k, c in enumerate(clients)]
        run = _Run(cfg, sessions, inst)
        # This process's own collector pauses would count as server latency: freeze the
        # warm heap and raise the thresholds for the run (tickline.core.gctune).
        freeze_after_warmup()
        with realtime_thresholds():
            result = await _drive(cfg, run, clients, sessions, symbol, show_progress)
        result["leftovers_cancelled"] = await _cancel_leftovers(sessions, symbol)
        return result
    finally:
        for c in clients:
            try:
                await asyncio.wait_for(c.logout(), 5.0)
            except (ClientError, TimeoutError):
                pass
            c.close()
        for c in clients:
            with _suppress_timeout():
                await asyncio.wait_for(c.wait_closed(), 2.0)


async def _drive(cfg: LoadConfig, run: _Run, clients: list[Client], sessions: list[_Session],
                 symbol: str, show_progress: bool) -> dict[str, Any]:
    sender = asyncio.create_task(run.sender())
    bar = _progress() if show_progress else None
    if bar is not None:
        bar.start()
        task = bar.add_task(f"{cfg.rate:,.0f} orders/s", total=run.total)
    last_draw = 0.0
    deadline = time.monotonic() + cfg.duration + 30.0
    try:
        while not run.done.is_set():
            if sender.done() and sender.exception() is not None:
                raise sender.exception()  # type: ignore[misc]
            if bar is not None and time.monotonic() - last_draw >= 1.0:
                last_draw = time.monotonic()
                bar.update(task, completed=run.completed)
                bar.refresh()
            if time.monotonic() > deadline or any(c.closed for c in clients):
                break
            with _suppress_timeout():
                await asyncio.wait_for(run.done.wait(), 0.25)
    finally:
        if bar is not None:
            bar.update(task, completed=run.completed)
            bar.refresh()
            bar.stop()
        if not sender.done():
            sender.cancel()
    unanswered = sum(len(s.inflight) for s in sessions) + (run.total - run.next_i)
    elapsed = ((run.last_response_ns - run.start_ns) / 1e9) if run.last_response_ns else 0.0
    measured_window = elapsed - (run.measure_from / cfg.rate)
    achieved = run.measured / measured_window if measured_window > 0 else 0.0
    pct = percentiles(run.latency.histogram, 1000.0) if run.measured else {
        "p50": 0.0, "p90": 0.0, "p99": 0.0, "p99_9": 0.0, "p99_99": 0.0, "max": 0.0,
        "count": 0}
    result: dict[str, Any] = {
        "offered_rate": cfg.rate,
        "achieved_rate": round(achieved, 1),
        "errors": run.errors + unanswered,
        "unanswered": unanswered,
        "rejects": run.rejects,
        "fills": run.fills,
        "orders": run.total,
        "completed": run.completed,
        "measured": run.measured,
        "duration_s": cfg.duration,
        "warmup_s": cfg.warmup,
        "sessions": cfg.sessions,
        "symbol": symbol,
        "host": cfg.host,
        "port": cfg.port,
        "latency_us": {k: round(float(v), 1) for k, v in pct.items() if k != "count"},
        "send_lag_us": {k: round(float(v), 1) for k, v in
                        percentiles(run.send_lag.histogram, 1000.0).items()
                        if k != "count"},
        "machine": machine(),
    }
    return result


def _progress() -> Progress:
    """The benchmark progress bar, redrawn by the run loop once a second rather than by
    rich's refresh thread (10 Hz): a render holds the GIL for about a millisecond, which
    would show up in the measured latencies."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        auto_refresh=False,
    )


class _suppress_timeout:  # noqa: N801 - used like contextlib.suppress
    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, *_: Any) -> bool:
        return et is not None and issubclass(et, TimeoutError)


def print_result(result: dict[str, Any]) -> None:
    lat = result["latency_us"]
    console.print(
        f"offered {result['offered_rate']:,.0f}/s  achieved {result['achieved_rate']:,.0f}/s  "
        f"orders {result['orders']:,}  errors {result['errors']:,}  "
        f"rejects {result['rejects']:,}  fills {result['fills']:,}  "
        f"sessions {result['sessions']}")
    console.print("round trip (µs, from planned send time): " + "  ".join(
        f"{k.replace('_', '.')} {lat[k]:,.1f}"
        for k in ("p50", "p90", "p99", "p99_9", "p99_99", "max")))
    lag = result["send_lag_us"]
    console.print("generator send lag (µs, planned -> sent): " + "  ".join(
        f"{k.replace('_', '.')} {lag[k]:,.1f}" for k in ("p50", "p99", "max")))


def run(cfg: LoadConfig, json_path: Path | None = None, *, show_progress: bool = True,
        protocol: str = "binary", fix_port: int = 9878, fix_sessions: str | None = None
        ) -> int:
    """CLI entry: run on uvloop when available; print; write JSON. Exit code 0, or 1 when
    nothing was answered. ``protocol`` "fix" runs the FIX load
    (:mod:`tickline.gateway.fix.load`) on ``fix_port``; "both" runs the binary load, then the
    FIX one with the same rate and duration, and reports the FIX/binary latency ratios."""
    from tickline.server import run_event_loop

    results: dict[str, Any] = {}
    try:
        if protocol in ("binary", "both"):
            results["binary"] = run_event_loop(run_load(cfg, show_progress=show_progress))
        if protocol in ("fix", "both"):
            from tickline.gateway.fix.load import DEFAULT_SESSIONS, run_fix_load

            results["fix"] = run_event_loop(run_fix_load(cfg, fix_port,
                                                         fix_sessions or DEFAULT_SESSIONS))
    except (ClientError, OSError, TimeoutError) as e:
        console.print(f"[red]error: {e}")
        return 1
    for name, result in results.items():
        if len(results) > 1:
            console.print(f"[bold]{name}")
        print_result(result)
    if len(results) == 2:
        b, f = results["binary"]["latency_us"], results["fix"]["latency_us"]
        results["fix_over_binary"] = {k: round(f[k] / b[k], 2) if b[k] else None
                                      for k in ("p50", "p99", "p99_9")}
        console.print("FIX / binary round trip: " + "  ".join(
            f"{k.replace('_', '.')} {v}x" for k, v in results["fix_over_binary"].items()))
    write_json(json_path, results if len(results) > 1 else next(iter(results.values())))
    return 0 if all(r["measured"] for r in results.values() if isinstance(r, dict)
                    and "measured" in r) else 1
