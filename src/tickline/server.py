"""``tickline serve``: the exchange loop with its gateways on one asyncio event loop.

The :class:`Server` owns one :class:`~tickline.exchange.Exchange` (recovered from its journal
on start) and the network edges that feed it and read from it:

* :class:`~tickline.gateway.binary.BinaryGateway` — length-prefixed binary order entry;
* :class:`~tickline.gateway.http.HttpGateway` — ``/metrics``, ``/health``, ``/book/<symbol>``,
  the dashboard page and its WebSocket feed.

Lifecycle: :meth:`Server.start` recovers, binds and starts the exchange task; SIGTERM or
SIGINT (or :meth:`Server.stop`) stops accepting connections, drains every accepted command
through all stages, syncs and closes the journal, then exits 0. A journal error stops the
exchange (see :mod:`tickline.exchange`); :func:`serve` then shuts down too and returns 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry

from tickline.config import ServerConfig
from tickline.core.gctune import (
    REALTIME_THRESHOLDS,
    GcPauseMonitor,
    frozen_heap,
    realtime_thresholds,
)
from tickline.core.metrics import FamiliesCollector, metric_families
from tickline.exchange import Exchange, ExchangeCollector

if TYPE_CHECKING:
    from tickline.gateway.binary import BinaryGateway
    from tickline.gateway.fix.gateway import FixGateway
    from tickline.gateway.http import HttpGateway

log = logging.getLogger(__name__)
T = TypeVar("T")


class Server:
    """An exchange and its gateways. Ports 0 mean "any free port": read :attr:`port` and
    :attr:`http_port` after :meth:`start`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        section = config.server
        if section.shards:  # one engine process per shard (tickline.shard)
            from tickline.shard import ShardedExchange
            self.exchange: Exchange = ShardedExchange(
                config.instruments, shards=section.shards, data_dir=section.journal_dir,
                shard_map=section.shard_map, engine_config=config.engine_config(),
                durability=section.durability, interval_ms=section.interval_ms,
                snapshot_every=section.snapshot_every, capacity=section.inbound_capacity,
                max_batch=section.max_batch, report_history=section.report_history,
                lanes=config.lanes.enabled, max_queue_ms=config.deadlines.max_queue_ms,
                match_deadline_ms=config.deadlines.match_ms,
                publish_deadline_ms=config.deadlines.publish_ms)
        elif section.cluster:  # cluster mode: the engines run elsewhere (tickline.cluster)
            from tickline.cluster.gateway import ClusterExchange

            self.exchange = ClusterExchange(
                section.cluster, config.instruments, engine_config=config.engine_config(),
                shards=section.cluster_shards, overrides=section.shard_map,
                report_history=section.report_history,
                max_pending=section.inbound_capacity,
                batches_in_flight=section.cluster_batches_in_flight)
        else:
            self.exchange = Exchange(
                config.instruments, engine_config=config.engine_config(),
                journal_dir=section.journal_dir, durability=section.durability,
                interval_ms=section.interval_ms, snapshot_every=section.snapshot_every,
                capacity=section.inbound_capacity, max_batch=section.max_batch,
                report_history=section.report_history,
                lanes=config.lanes.enabled, starvation_bound=config.lanes.starvation_bound,
                high_capacity=config.lanes.high_capacity,
                max_queue_ms=config.deadlines.max_queue_ms,
                match_deadline_ms=config.deadlines.match_ms,
                publish_deadline_ms=config.deadlines.publish_ms,
            )
        self.binary: BinaryGateway | None = None
        self.http: HttpGateway | None = None
        self.fix: FixGateway | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self.gc_monitor = GcPauseMonitor().install()  # every collection's pause, in /metrics
        # This server's metrics, one collector per component (the gateways register theirs
        # when they start); its own registry, never the global default one.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(ExchangeCollector(self.exchange))
        self.registry.register(FamiliesCollector(self._gc_families))
        self.port = 0
        self.http_port = 0
        self.fix_port = 0

    async def start(self) -> None:
        from tickline.gateway.binary import BinaryGateway
        from tickline.gateway.http import HttpGateway

        start = getattr(self.exchange, "start", None)
        if start is not None:  # cluster mode: connect and catch up before listening
            await start()
        self._runner = asyncio.create_task(self.exchange.run(), name="exchange")
        section = self.config.server
        self.binary = BinaryGateway(self.exchange, self.config)
        self.registry.register(self.binary.collector)
        self.port = await self.binary.start(section.host, section.port)
        self.http = HttpGateway(self, self.config.websocket)
        self.http_port = await self.http.start(section.host, section.http_port)
        if self.config.fix.port is not None:  # the FIX 4.4 acceptor: off unless configured
            from tickline.gateway.fix.gateway import FixGateway

            self.fix = FixGateway(self.exchange, self.config)
            self.registry.register(self.fix.collector)
            self.fix_port = await self.fix.start(section.host, self.config.fix.port)

    async def stop(self) -> None:
        """Stop accepting, drain, sync the journal, close everything. Idempotent."""
        if self._stopped.is_set():
            return
        if self.binary is not None:
            await self.binary.stop_accepting()
        if self.fix is not None:
            self.fix.stop_accepting()
        await self.exchange.stop()
        if self._runner is not None:
            try:
                await self._runner
            except Exception:
                if self.exchange.failure is None:
                    raise
                # the journal failure that ended the exchange: already logged; close the rest
        if self.binary is not None:
            await self.binary.close()
        if self.http is not None:
            await self.http.close()
        if self.fix is not None:
            await self.fix.close()
        self.gc_monitor.uninstall()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def prometheus(self) -> str:
        """Every metric of the exchange, its gateways and the garbage collector: the
        Prometheus text format 0.0.4 of :attr:`registry` (what ``GET /metrics`` serves)."""
        return generate_latest(self.registry).decode()

    def _gc_families(self) -> list[Metric]:
        gc_stats = self.gc_monitor.statistics()
        return metric_families(
            "tickline_gc",
            {f"collections_gen{g}": n for g, n in enumerate(gc_stats.collections)},
            [dataclasses.replace(gc_stats.pause_ns, name="pause_ns")])

    def health(self) -> dict[str, Any]:
        """The state an operator or a probe checks; the HTTP gateway answers ``/health``
        with it, 200 when ``status`` is ``ok`` and 503 otherwise. ``status`` is ``failed``
        (the journal failed: the exchange stopped), ``stopping``, ``degraded`` (the exchange
        runs and acknowledges safely, but its last snapshot failed — a disk filling up; the
        journal is intact, so only a restart's recovery gets slower), or ``ok``; ``reason``
        says why it is not ``ok``."""
        ex = self.exchange
        if ex.failure is not None:
            status, reason = "failed", f"journal failed: {ex.failure}"
        elif ex.processor.stopping:
            status, reason = "stopping", "shutting down"
        elif ex.snapshot_error is not None:
            status, reason = "degraded", f"last snapshot failed: {ex.snapshot_error}"
        else:
            status, reason = "ok", None
        shards = getattr(ex, "shard_health", None)
        shard_status = shards() if shards is not None else None
        if status == "ok" and shard_status and not all(s["up"] for s in shard_status):
            down = [str(s["shard"]) for s in shard_status if not s["up"]]
            status, reason = "degraded", f"shard(s) {', '.join(down)} down, restarting"
        return {
            "shards": shard_status,
            "status": status,
            "reason": reason,
            "snapshots": ex.snapshot_statistics(),
            "last_seq": ex.engine.last_seq,
            "resting_orders": len(ex.engine.orders),
            "sessions": self.binary.session_count() if self.binary is not None else 0,
            "websocket_sessions": self.http.session_count() if self.http is not None else 0,
            "fix_sessions": self.fix.session_count() if self.fix is not None else 0,
            "journal": ex.journal.statistics() if ex.journal is not None else None,
            **({"cluster": ex.statistics()} if self.config.server.cluster else {}),
            "recovery": {
                "records_replayed": ex.recovery.records_replayed,
                "snapshot_seq": ex.recovery.snapshot_seq,
                "truncated_bytes": ex.recovery.truncated_bytes,
                "seconds": round(ex.recovery.seconds, 3),
            } if ex.recovery is not None else None,
        }


async def serve(config: ServerConfig, *, ready: Any = None) -> int:
    """Run a server until SIGTERM/SIGINT; return the exit code. ``ready(server)`` is called
    once it listens (the CLI prints the ports there)."""
    server = Server(config)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    if server._runner is not None:  # a fatal journal error ends the exchange: stop too
        server._runner.add_done_callback(lambda _task: stop.set())
    if ready is not None:
        ready(server)
    with contextlib.ExitStack() as gc_settings:
        if config.server.gc_freeze and not config.server.gc_tuning:
            # Measured (docs/fix.md, "GC stalls"): a full collection walked the ~50,000
            # objects built at start-up (modules, the configuration, rings, recovered books)
            # every time -- 30-70 ms of CPU each, a FIX p99 of tens of ms at 10,000/s.
            # Frozen, a full collection walks only what was built since (a few ms). The
            # thresholds stay the default ones: nothing is deferred, garbage is still found.
            frozen = gc_settings.enter_context(frozen_heap())
            log.info("gc: %d start-up objects frozen", frozen)
        if config.server.gc_tuning:
            # Measured (docs/benchmarks.md, binary order entry): the recovered books and
            # everything built at start-up are long-lived; freezing them takes them out of
            # every later collection, and raised thresholds keep full collections out of
            # the hot path.
            frozen = gc_settings.enter_context(frozen_heap())
            gc_settings.enter_context(realtime_thresholds())
            log.info("gc: %d start-up objects frozen, thresholds %s", frozen,
                     REALTIME_THRESHOLDS)
        await stop.wait()
    log.info("stopping: draining and syncing the journal")
    await server.stop()
    return 1 if server.exchange.failure is not None else 0


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (a dependency on Linux and macOS: a
    faster event loop for the gateways), else on the standard asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(main)
    return uvloop.run(main)


def event_loop_name() -> str:
    """Which event loop :func:`run_event_loop` uses."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        return "asyncio"
    return "uvloop"
