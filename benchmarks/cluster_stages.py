"""Where a cluster-mode round trip goes: per-batch timestamps in every process of one
``tickline bench cluster`` run (gateway, leader, standby, load generator), then joined.

Every process stamps with ``time.time_ns`` (CLOCK_REALTIME: one clock for every process on
the machine, and the clock the gateway writes into each input message as its engine time,
so an input batch is named by its logged ``ts`` everywhere; the load generator's
``perf_counter_ns`` is converted once). Stages of one order::

    planned -> front (the generator's lateness, the socket, the gateway's read and submit)
    -> hold (submitted -> its batch made: waiting behind the batches in flight)
    -> to_leader (the gateway's flush, nats-server, the leader's read) -> apply
    -> out_wait (applied -> its output message sent: the previous output's ack)
    -> ack (JetStream stores it) -> to_gw (nats-server -> the gateway's read)
    -> release (reports, routing, answers) -> back (the reply's write, the generator's read)

Each process also logs its collections (``gc.callbacks``), late event-loop wake-ups (a 1 ms
timer more than 3 ms late: the process busy or not scheduled), lease renewals and every
node's lease tick (``#tick``).

    python benchmarks/cluster_stages.py run DIR --rate 10000 --duration 3 --runs 3
    python benchmarks/cluster_stages.py join DIR

``run`` starts the bench's processes through this script (``child``), which patches the
classes of its own process and then runs ``tickline`` unchanged. ``join`` prints each
stage's p50/p90/p99 over the load generator's measured orders and the stage means of the
orders in the top 1% (what the tail is made of), plus the GC pauses and late wake-ups per
process. Diagnostic only: the tracing itself costs CPU (an extra decode per message).
"""

from __future__ import annotations

import bisect
import gc
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

_now = time.time_ns


def _out(role: str) -> Any:
    d = Path(os.environ["CLSTAGES_DIR"])
    return open(d / f"{role}-{os.getpid()}.tsv", "w", buffering=1 << 20)


def _common(out: Any) -> None:
    gc_start = [0]

    def gc_cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = _now()
        else:
            t = _now()
            out.write(f"#gc\t{gc_start[0]}\t{t - gc_start[0]}\t{info['generation']}\n")

    gc.callbacks.append(gc_cb)


async def _watch_loop(out: Any) -> None:
    import asyncio

    while True:
        t = _now()
        await asyncio.sleep(0.001)
        late = _now() - t - 1_000_000
        if late > 3_000_000:
            out.write(f"#late\t{t}\t{late}\n")


def _install_gateway() -> None:
    import asyncio

    from tickline.cluster import gateway as gw
    from tickline.cluster.wire import decode_logged, decode_output_rows

    out = _out("gateway")
    _common(out)
    subs: deque[list[int]] = deque()  # [submit time, commands left]
    cls = gw.ClusterExchange
    orig_submit_many = cls.submit_many
    orig_make = cls._make_batches
    orig_on_output = cls._on_output
    orig_start = cls.start

    def submit_many(self: Any, cmds: Any, reply: Any = None, origin: Any = None) -> int:
        n = orig_submit_many(self, cmds, reply, origin)
        if n:
            subs.append([_now(), n])
        return n

    def make_batches(self: Any, waits: Any) -> Any:
        batches = orig_make(self, waits)
        if getattr(self, "_clst_depth", 0):
            return batches
        for b in batches:
            n = b.last - b.ticket + 1
            oldest = subs[0][0] if subs else 0
            while n and subs:
                take = min(n, subs[0][1])
                subs[0][1] -= take
                n -= take
                if not subs[0][1]:
                    subs.popleft()
            ts = decode_logged(b.payload).ts
            out.write(f"P\t{ts}\t{oldest}\t{b.last - b.ticket + 1}\t{len(self._order)}\n")
        return batches

    def on_output(self: Any, shard: int, data: bytes) -> None:
        t0 = _now()
        orig_on_output(self, shard, data)
        t1 = _now()
        rows = decode_output_rows(data)[2]
        if rows:
            out.write(f"O\t{rows[0][2].ts}\t{rows[-1][2].ts}\t{t0}\t{t1}\t{len(rows)}\n")

    async def start(self: Any) -> None:
        await orig_start(self)
        self._clst_watch = asyncio.get_running_loop().create_task(_watch_loop(out))

    cls.submit_many = submit_many  # type: ignore[method-assign]
    cls._make_batches = make_batches  # type: ignore[method-assign]
    cls._on_output = on_output  # type: ignore[method-assign]
    cls.start = start  # type: ignore[method-assign]


def _install_node() -> None:
    import asyncio

    from tickline.cluster import node as nd
    from tickline.cluster import publish as pb
    from tickline.cluster.wire import decode_output

    out = _out("node")
    _common(out)
    seen: list[int] = []
    orig_decode = nd.decode_logged

    def decode_logged(data: bytes) -> Any:
        logged = orig_decode(data)
        seen.append(logged.ts)
        return logged

    cls = nd.EngineNode
    orig_on_input = cls._on_input
    orig_renew = cls._renew
    orig_tick = cls._lease_tick
    orig_start = cls.start

    async def on_input(self: Any, items: Any) -> None:
        t0 = _now()
        seen.clear()
        await orig_on_input(self, items)
        t1 = _now()
        role = "L" if self.leader else "S"
        for ts in seen:
            out.write(f"I{role}\t{ts}\t{t0}\t{t1}\t{len(items)}\n")

    async def renew(self: Any) -> None:
        t0 = _now()
        await orig_renew(self)
        out.write(f"#renew\t{t0}\t{_now() - t0}\n")

    async def lease_tick(self: Any) -> None:
        t0 = _now()
        await orig_tick(self)
        out.write(f"#tick\t{t0}\t{_now() - t0}\n")

    async def start(self: Any) -> None:
        await orig_start(self)
        self._clst_watch = asyncio.get_running_loop().create_task(_watch_loop(out))

    orig_publish = pb.AckedPublisher.publish

    async def publish(self: Any, subject: str, payload: bytes, **kw: Any) -> int:
        t0 = _now()
        seq = await orig_publish(self, subject, payload, **kw)
        done = decode_output(payload).done
        out.write(f"Q\t{done[0].cmd.ts}\t{done[-1].cmd.ts}\t{t0}\t{_now()}\t{len(done)}\n")
        return seq

    nd.decode_logged = decode_logged
    cls._on_input = on_input  # type: ignore[method-assign]
    cls._renew = renew  # type: ignore[method-assign]
    cls._lease_tick = lease_tick  # type: ignore[method-assign]
    cls.start = start  # type: ignore[method-assign]
    pb.AckedPublisher.publish = publish  # type: ignore[method-assign]


def _install_loadgen() -> None:
    from tickline import loadgen as lg

    out = _out("client")
    offset = time.time_ns() - time.perf_counter_ns()
    orig_hook = lg._Run._make_hook

    def make_hook(self: Any, s: Any) -> Any:
        hook = orig_hook(self, s)

        def on_response(resp: Any) -> None:
            planned = s.inflight.get(resp.request_id)
            hook(resp)
            if planned is not None:
                out.write(f"C\t{planned + offset}\t{_now()}\n")
        return on_response

    lg._Run._make_hook = make_hook  # type: ignore[method-assign]


def child(argv: list[str]) -> None:
    if "serve" in argv:
        _install_gateway()
    elif "cluster-engine" in argv:
        _install_node()
    from tickline.cli import main

    sys.argv = ["tickline", *argv]
    main()


def run(d: Path, argv: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.tsv"):
        f.unlink()
    os.environ["CLSTAGES_DIR"] = str(d)
    from tickline.bench import cluster as bc

    bc._TICKLINE = [sys.executable, os.path.abspath(__file__), "child"]
    _trace_nats(d)
    _install_loadgen()
    from tickline.cli import main

    sys.argv = ["tickline", "bench", "cluster", "--failovers", "0", *argv]
    main()


def _trace_nats(d: Path) -> None:
    """Start the bench's nats-server with ``GODEBUG=gctrace=1`` (Go's collector cycles on
    stderr, timed from the process start, which is written first), ``$CLSTAGES_GOGC`` and
    ``$CLSTAGES_NATS_NICE`` (run it under ``nice -n N``: is the tail its scheduling?)."""
    import subprocess

    from tickline.cluster import natsserver as ns

    real = subprocess.Popen

    def popen(argv: Any, *a: Any, **kw: Any) -> Any:
        if str(argv[0]).endswith("nats-server"):
            env = dict(os.environ, GODEBUG="gctrace=1")
            if os.environ.get("CLSTAGES_GOGC"):
                env["GOGC"] = os.environ["CLSTAGES_GOGC"]
            err = open(d / "nats-gc.log", "w")  # noqa: SIM115 - the server's life
            err.write(f"start {time.time_ns()}\n")
            err.flush()
            kw.update(stderr=err, env=env)
            if os.environ.get("CLSTAGES_NATS_NICE"):
                argv = ["nice", "-n", os.environ["CLSTAGES_NATS_NICE"], *argv]
        return real(argv, *a, **kw)

    ns.subprocess.Popen = popen  # type: ignore[misc]


def _pct(v: list[int], q: float) -> float:
    return v[min(len(v) - 1, int(q * len(v)))] / 1e6 if v else 0.0


def join(d: Path) -> None:
    rows: dict[str, list[list[int]]] = {}
    notes: dict[str, list[list[int]]] = {}
    for f in sorted(d.glob("*.tsv")):
        for line in f.read_text().splitlines():
            p = line.split("\t")
            if p[0].startswith("#"):
                notes.setdefault(f"{f.stem} {p[0][1:]}", []).append([int(x) for x in p[1:]])
            else:
                rows.setdefault(p[0], []).append([int(x) for x in p[1:]])
    pubs = sorted(rows.get("P", []))  # ts, oldest submit, n, waiting
    lead = {r[0]: r for r in rows.get("IL", [])}  # ts -> ts, entry, exit, items
    q = sorted(rows.get("Q", []))  # first ts, last ts, send, ack, n
    outs = rows.get("O", [])  # first ts, last ts, received, released, n
    clients = rows.get("C", [])
    q_first = [r[0] for r in q]
    order = sorted(range(len(outs)), key=lambda i: outs[i][3])
    done_sorted = [outs[i][3] for i in order]
    pub_ts = [r[0] for r in pubs]
    stages = ["front", "hold", "to_leader", "apply", "out_wait", "ack", "to_gw", "release",
              "back", "total"]
    per: dict[str, list[int]] = {s: [] for s in stages}
    samples: list[tuple[int, list[int]]] = []
    if clients:
        t_first = min(c[0] for c in clients)
    for planned, got in clients:
        if planned < t_first + 1_000_000_000:
            continue  # warm-up of the first run
        j = bisect.bisect_right(done_sorted, got) - 1
        if j < 0:
            continue
        o = outs[order[j]]
        i = bisect.bisect_right(pub_ts, o[0]) - 1  # the output's first input batch
        if i < 0:
            continue
        p = pubs[i]
        li = lead.get(p[0])
        k = bisect.bisect_right(q_first, o[0]) - 1
        if li is None or k < 0:
            continue
        qq = q[k]
        v = [p[1] - planned, p[0] - p[1], li[1] - p[0], li[2] - li[1], qq[2] - li[2],
             qq[3] - qq[2], o[2] - qq[3], o[3] - o[2], got - o[3], got - planned]
        samples.append((v[-1], v))
        for s, x in zip(stages, v, strict=True):
            per[s].append(x)
    print(f"orders joined: {len(samples)} of {len(clients)}; input batches {len(pubs)} "
          f"(mean {sum(r[2] for r in pubs) / max(1, len(pubs)):.1f} commands), output "
          f"messages {len(q)} (mean {sum(r[4] for r in q) / max(1, len(q)):.1f})")
    print(f"{'stage':10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'top1% mean':>11}")
    samples.sort(key=lambda x: x[0])
    tail = samples[int(len(samples) * 0.99):]
    for n, s in enumerate(stages):
        v = sorted(per[s])
        tm = sum(t[1][n] for t in tail) / max(1, len(tail)) / 1e6
        print(f"{s:10} {_pct(v, 0.5):8.2f} {_pct(v, 0.9):8.2f} {_pct(v, 0.99):8.2f} {tm:11.2f}")
    for name, ev in sorted(notes.items()):
        durs = sorted(e[1] for e in ev)
        print(f"{name:28} n={len(ev):5} p50 {_pct(durs, 0.5):6.2f} ms max "
              f"{_pct(durs, 1.0):7.2f} ms total {sum(durs) / 1e6:8.1f} ms")
    if tail:
        lo, hi = tail[0][1][-1], tail[-1][1][-1]
        print(f"top 1%: {len(tail)} orders, {lo / 1e6:.1f}-{hi / 1e6:.1f} ms")


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(sys.argv[2:])
    elif sys.argv[1] == "run":
        run(Path(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1] == "join":
        join(Path(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
