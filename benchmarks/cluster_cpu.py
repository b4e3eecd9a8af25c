"""CPU time per order of each process of the cluster layout under load, and the round trip:
the layout of ``tickline bench cluster`` (a private nats-server, leader and standby engines of
shard 0, one gateway) with ``tickline loadgen`` as its own process at each offered rate.

Per process: utime + stime (``/proc/PID/stat``) over the load run, divided by the orders
sent, in microseconds per order, and the input messages the gateway published (with the
commands per message: the batches, from its ``/health``) — what a change saves where,
independent of how busy the shared machine's other jobs keep the cores (wall-clock latency
is not). ``--gc-off`` starts
the tickline processes with the cyclic collector disabled (an experiment: is a tail the
collector's?); ``--py-spy DIR`` records a py-spy flame graph of each tickline process during
the run (py-spy must be installed; its samples are wall time: a process waiting for a core
shows where it was preempted, often a socket write); ``--profile DIR`` runs the leader,
standby and gateway under cProfile timed by CPU (``DIR/<name>.prof``, whole process life:
start-up and prefill included, the profiler's own cost too); ``--standby-nice N`` renices
the standby engine::

    python benchmarks/cluster_cpu.py --rate 10000 --duration 5
    python benchmarks/cluster_cpu.py --rate 10000 --rounds 3 --send-interval 0.0005
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tickline.bench.cluster import _TICKLINE, _Proc
from tickline.cluster.natsserver import NatsServer

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _argv(gc_off: bool, profile: Path | None = None, name: str = "") -> list[str]:
    if profile is not None:  # cProfile on CPU time, written when the process exits
        out = profile / f"{name}.prof"
        return [sys.executable, "-c",
                "import atexit, cProfile, sys, time; p = cProfile.Profile(time.process_time); "
                f"atexit.register(lambda: (p.disable(), p.dump_stats({str(out)!r}))); "
                "from tickline.cli import main; sys.argv[0] = 'tickline'; p.enable(); main()"]
    if not gc_off:
        return list(_TICKLINE)
    return [sys.executable, "-c",
            "import gc, sys; gc.disable(); gc.freeze = lambda: None; "
            "import tickline.core.gctune as g; g.realtime_thresholds = "
            "__import__('contextlib').nullcontext; "
            "from tickline.cli import main; sys.argv[0] = 'tickline'; main()"]


def _cluster_stats(http_port: str) -> dict[str, Any]:
    """The gateway's ``/health`` cluster section (``published`` commands, ``batches``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=5) as r:
        stats: dict[str, Any] = json.loads(r.read())["cluster"]
    return stats


def _spies(out: Path, pids: dict[str, int], rate: float, duration: float
           ) -> list[subprocess.Popen[bytes]]:
    out.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen(
        ["py-spy", "record", "-r", "200", "-d", str(int(duration + 2)), "-f", "speedscope",
         "-o", str(out / f"{n}-{int(rate)}.json"), "-p", str(pids[n])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in ("leader", "standby", "gateway")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, action="append")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--send-interval", type=float, default=0.0)
    ap.add_argument("--wait", default="spin", choices=["spin", "sleep"])
    ap.add_argument("--gc-off", action="store_true")
    ap.add_argument("--standby-nice", type=int, default=0,
                    help="renice the standby engine (an experiment: off the latency path)")
    ap.add_argument("--py-spy", type=Path, default=None)
    ap.add_argument("--keep-logs", type=Path, default=None)
    ap.add_argument("--profile", type=Path, default=None)
    args = ap.parse_args()
    tl = _argv(args.gc_off)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    rates = args.rate or [10_000.0]
    with tempfile.TemporaryDirectory(prefix="tickline-cluster-cpu-") as d:
        tmp = Path(d)
        with NatsServer(tmp / "nats") as nats:
            assert nats.proc is not None
            procs = {
                name: _Proc([*_argv(args.gc_off, args.profile, name), "cluster-engine",
                             "--cluster", nats.url, "--lease", "1.0",
                             "--node-id", name, "--snapshot-every", "100000"],
                            tmp / f"{name}.log")
                for name in ("leader", "standby")}
            procs["gateway"] = _Proc([*_argv(args.gc_off, args.profile, "gateway"), "serve",
                                      "--cluster", nats.url, "--port", "0",
                                      "--http-port", "0"], tmp / "gateway.log")
            port = procs["gateway"].field("port")
            http_port = procs["gateway"].field("http_port")
            pids = {name: p.proc.pid for name, p in procs.items()}
            pids["nats"] = nats.proc.pid
            if args.standby_nice:
                os.setpriority(os.PRIO_PROCESS, pids["standby"], args.standby_nice)
            try:
                for _ in range(args.rounds):
                    for rate in rates:
                        out = tmp / "load.json"
                        before = {n: _cpu_s(pid) for n, pid in pids.items()}
                        stats0 = _cluster_stats(http_port)
                        spies = [] if args.py_spy is None else _spies(args.py_spy, pids,
                                                                      rate, args.duration)
                        t0 = time.monotonic()
                        spy_lg = [] if args.py_spy is None else [
                            "py-spy", "record", "-r", "200", "-f", "speedscope", "-o",
                            str(args.py_spy / f"loadgen-{int(rate)}.json"), "--"]
                        lg = subprocess.Popen(
                            [*spy_lg, *tl, "loadgen", "--port", port, "--rate", str(rate),
                             "--duration", str(args.duration), "--sessions",
                             str(args.sessions), "--send-interval", str(args.send_interval),
                             "--wait", args.wait, "--json", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        _, status, usage = os.wait4(lg.pid, 0)
                        lg.returncode = os.waitstatus_to_exitcode(status)
                        loadgen_cpu = usage.ru_utime + usage.ru_stime
                        wall = time.monotonic() - t0
                        res = json.loads(out.read_text())
                        after = {n: _cpu_s(pid) for n, pid in pids.items()}
                        stats1 = _cluster_stats(http_port)
                        batches = stats1["batches"] - stats0["batches"]
                        per_msg = (stats1["published"] - stats0["published"]) / max(1, batches)
                        for s in spies:
                            s.wait()
                        orders = res["orders"]
                        cpu = {n: round((after[n] - before[n]) / orders * 1e6, 1)
                               for n in pids}
                        lat = res["latency_us"]
                        print(json.dumps({
                            "rate": rate, "achieved": res["achieved_rate"],
                            "p50_ms": round(lat["p50"] / 1000, 2),
                            "p90_ms": round(lat["p90"] / 1000, 2),
                            "p99_ms": round(lat["p99"] / 1000, 2),
                            "max_ms": round(lat["max"] / 1000, 1),
                            "errors": res["errors"],
                            "cpu_us_per_order": cpu,
                            "loadgen_cpu_us": round(loadgen_cpu / orders * 1e6, 1),
                            "input_messages": batches,
                            "commands_per_input_message": round(per_msg, 1),
                            "wall_s": round(wall, 1), "load": os.getloadavg()[0]}),
                            flush=True)
                        if lg.returncode:
                            print(f"loadgen exited {lg.returncode}", file=sys.stderr)
            finally:
                for p in procs.values():
                    p.close()
                if args.keep_logs is not None:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for f in tmp.glob("*.log"):
                        shutil.copy(f, args.keep_logs / f.name)


if __name__ == "__main__":
    main()
