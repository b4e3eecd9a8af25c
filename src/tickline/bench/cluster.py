"""``tickline bench cluster``: cluster mode end to end, on this machine.

Starts a private ``nats-server -js`` (free port, temporary store), a leader and a standby
``tickline cluster-engine`` for shard 0 and a ``tickline serve --cluster`` gateway, each its
own process, then measures:

* **throughput and latency**: ``tickline loadgen`` (open loop, coordinated-omission corrected,
  round trip from the planned send time) at each offered rate, ``runs`` times; the medians;
* **failover**: ``failovers`` times, SIGKILL the leader while a client sends one resting order
  every 2 ms, and time from the kill to the first acknowledgement of an order sent after it
  (accepted by the new leader); a fresh standby joins before the next kill. The median and
  the maximum.

Everything shares this machine's cores (NATS, two engines, the gateway and the load
generator): the figures are for this layout, not for separate machines. The load generator
waits between planned sends in the kernel by default (``loadgen --wait sleep``, bench
``--loadgen-wait``): spinning kept about half of one of the two cores busy at 10,000/s,
taken from the processes under test; ``--loadgen-wait spin`` measures as before.
``batches_in_flight`` (bench ``--batches-in-flight``) starts the gateway with that
``[server] cluster_batches_in_flight`` (default: the configuration's, 4), to compare windows
on one tree.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tickline.cluster.natsserver import NatsServer

__all__ = ["run"]

_TICKLINE = [sys.executable, "-m", "tickline.cli"]


class _Proc:
    def __init__(self, argv: list[str], log: Path, ready: str = "READY ") -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[3]} did not start:\n{log.read_text()}")
            time.sleep(0.02)

    def field(self, name: str) -> str:
        for line in self.log.read_text().splitlines():
            if line.startswith("READY "):
                return dict(kv.split("=", 1) for kv in line.split()[1:])[name]
        raise KeyError(name)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def _engine(url: str, tmp: Path, name: str, lease: float) -> _Proc:
    return _Proc([*_TICKLINE, "cluster-engine", "--cluster", url, "--lease", str(lease),
                  "--node-id", name, "--snapshot-every", "100000"], tmp / f"{name}.log")


async def _leader(url: str) -> str:
    from tickline.cluster.jetstream import connect

    nc = await connect(url)
    try:
        kv = await nc.jetstream().key_value("TL_LEADER")
        entry = await kv.get("shard-0")
        return (entry.value or b"").decode()
    finally:
        await nc.close()


async def _failovers(url: str, port: int, tmp: Path, engines: dict[str, _Proc], n: int,
                     lease: float) -> list[float]:
    from tickline.client import Client

    client = await Client.connect("127.0.0.1", port, "alice-key")
    acks: list[tuple[float, float]] = []
    stop = False
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        sent = time.monotonic()
        await client.new_order("AAPL", "buy", 1, "0.50", client_order_id=f"f{i}")
        acks.append((sent, time.monotonic()))

    async def load() -> None:
        i = 0
        while not stop:
            i += 1
            t = asyncio.ensure_future(one(i))
            pending.add(t)
            t.add_done_callback(pending.discard)
            await asyncio.sleep(0.002)

    runner = asyncio.ensure_future(load())
    times = []
    try:
        for r in range(n):
            await asyncio.sleep(0.5)
            leader = await _leader(url)
            killed = time.monotonic()
            engines[leader].proc.kill()
            while True:
                later = [a for s, a in acks if s >= killed]
                if later:
                    times.append(min(later) - killed)
                    break
                if time.monotonic() - killed > 30:
                    raise RuntimeError("no takeover within 30 s")
                await asyncio.sleep(0.002)
            engines.pop(leader).close()
            name = f"e{r + 2}"
            engines[name] = await asyncio.to_thread(_engine, url, tmp, name, lease)
    finally:
        stop = True
        await runner
        if pending:
            await asyncio.wait(pending, timeout=30)
        client.close()
    return times


def _median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "achieved_rate": statistics.median(r["achieved_rate"] for r in results),
        "p50_us": statistics.median(r["latency_us"]["p50"] for r in results),
        "p99_us": statistics.median(r["latency_us"]["p99"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "runs": [{"achieved_rate": r["achieved_rate"], "p50_us": r["latency_us"]["p50"],
                  "p99_us": r["latency_us"]["p99"]} for r in results],
    }


def run(*, rates: list[float], duration: float, runs: int, failovers: int, lease: float,
        sessions: int, json_path: Path | None, send_interval: float = 0.0,
        wait: str = "sleep", batches_in_flight: int | None = None) -> dict[str, Any]:
    from tickline.loadgen import LoadConfig, run_load
    from tickline.server import run_event_loop

    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(),
                                       "loadavg_at_start": os.getloadavg()},
                           "lease_s": lease, "sessions": sessions, "duration_s": duration,
                           "send_interval_s": send_interval, "loadgen_wait": wait}
    if batches_in_flight is not None:
        out["batches_in_flight"] = batches_in_flight
    with tempfile.TemporaryDirectory(prefix="tickline-bench-cluster-") as d:
        tmp = Path(d)
        with NatsServer(tmp / "nats") as nats:
            engines = {name: _engine(nats.url, tmp, name, lease) for name in ("e0", "e1")}
            argv = [*_TICKLINE, "serve", "--cluster", nats.url, "--port", "0",
                    "--http-port", "0"]
            if batches_in_flight is not None:
                toml = tmp / "gateway.toml"
                toml.write_text(f"[server]\ncluster_batches_in_flight = {batches_in_flight}\n")
                argv += ["--config", str(toml)]
            gateway = _Proc(argv, tmp / "gateway.log")
            try:
                port = int(gateway.field("port"))
                load: dict[str, Any] = {}
                for rate in rates:
                    results = []
                    for _ in range(runs):
                        cfg = LoadConfig(port=port, rate=rate, duration=duration,
                                         sessions=sessions, warmup=1.0,
                                         send_interval=send_interval, wait=wait)
                        results.append(run_event_loop(run_load(cfg, show_progress=False)))
                    m = load[str(int(rate))] = _median_of(results)
                    print(f"offered {rate:,.0f}/s: achieved {m['achieved_rate']:,.0f}/s "
                          f"p50 {m['p50_us']:,.0f} µs p99 {m['p99_us']:,.0f} µs "
                          f"(median of {runs})", flush=True)
                out["load"] = load
                if failovers:
                    times = run_event_loop(_failovers(nats.url, port, tmp, engines,
                                                      failovers, lease))
                    out["failover_s"] = {"median": statistics.median(times),
                                         "max": max(times), "runs": times}
                    print(f"failover (SIGKILL -> first accepted order on the new leader): "
                          f"median {statistics.median(times):.3f} s, max {max(times):.3f} s "
                          f"over {len(times)}", flush=True)
            finally:
                gateway.close()
                for e in engines.values():
                    e.close()
    out["machine"]["loadavg_at_end"] = os.getloadavg()
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2) + "\n")
    return out
