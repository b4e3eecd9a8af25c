"""Where a FIX order's round trip goes: per-order timestamps on both sides of one
``tickline loadgen --protocol fix`` run, joined by ClOrdID.

Both processes stamp with ``time.perf_counter_ns`` (CLOCK_MONOTONIC: one clock for every
process on the machine), so the stages line up::

    planned -> sent (generator's own lateness) -> srv_read (in the socket, or the server busy)
    -> srv_submit (framing, parse, session checks, conversion: the read's whole batch)
    -> srv_reply (the exchange loop: ring wait, journal, engine, report builder)
    -> srv_write (the session's flush: one write per loop turn) -> cli_read (in the socket,
    or the generator busy) -> cli_done (the generator's framing and field extraction of that
    read, up to this order's report)

Run the server and the generator through this script (each patches the FIX classes of its
own process, nothing else changes), then join::

    FIXTRACE=/tmp/srv.tsv python benchmarks/fix_stages.py serve --durability none --fix-port P ...
    FIXTRACE=/tmp/cli.tsv python benchmarks/fix_stages.py loadgen --protocol fix --fix-port P ...
    python benchmarks/fix_stages.py join /tmp/srv.tsv /tmp/cli.tsv

``join`` prints each stage's p50/p99 over all measured orders, and the stage means of the
orders whose round trip is in the top 1% (the tail: which stage it is made of). The server
also logs each collection (``gc.callbacks``) and the event loop's long turns (a read whose
processing took > 2 ms) as ``#`` lines.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

_clock = time.perf_counter_ns


def _install_server(path: str) -> None:
    from tickline.gateway.fix import session as fs

    out = open(path, "w", buffering=1 << 20)  # noqa: SIM115 - open for the process's life
    recv: dict[int, tuple[str, int, int]] = {}  # id(cmd) -> (clid, t_read, t_submit)
    replied: list[tuple[str, int, int, int]] = []  # waiting for the session's flush
    state = {"read": 0}
    orig_data = fs.FixSession.data_received
    orig_submit = fs.FixSession._submit_staged
    orig_reply = fs.FixSession._on_reply
    orig_flush = fs.FixSession.flush

    def data_received(self: Any, data: bytes) -> None:
        state["read"] = t = _clock()
        orig_data(self, data)
        dt = _clock() - t
        if dt > 2_000_000:
            out.write(f"# long_read {t} {dt} {len(data)}\n")

    def submit(self: Any) -> None:
        cmds = list(self.staged)
        ctx = list(self.staged_ctx)
        t = _clock()
        orig_submit(self)
        for cmd, (_mt, values) in zip(cmds, ctx, strict=True):
            recv[id(cmd)] = (values.get(11, ""), state["read"], t)

    def on_reply(self: Any, cmd: Any, events: Any, reports: Any) -> None:
        got = recv.pop(id(cmd), None)
        if got is not None:
            replied.append((got[0], got[1], got[2], _clock()))
        orig_reply(self, cmd, events, reports)

    def flush(self: Any) -> None:
        orig_flush(self)
        t = _clock()
        for clid, a, b, c in replied:
            out.write(f"{clid}\t{a}\t{b}\t{c}\t{t}\n")
        replied.clear()

    gc_start = [0]

    def gc_cb(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_start[0] = _clock()
        else:
            t = _clock()
            out.write(f"# gc {gc_start[0]} {t - gc_start[0]} {info['generation']}\n")

    from tickline.gateway.fix import store as fstore

    orig_store_flush = fstore.SessionStore.flush

    def store_flush(self: Any) -> None:
        t = _clock()
        orig_store_flush(self)
        dt = _clock() - t
        if dt > 1_000_000:
            out.write(f"# store_flush {t} {dt}\n")

    try:
        fstore.SessionStore.flush = store_flush  # type: ignore[method-assign]
    except TypeError:  # compiled: a native class (its flush is not timed)
        pass
    from tickline.gateway.fix import gateway as fgw

    orig_start = fgw.FixGateway.start

    async def start(self: Any, *args: Any, **kwargs: Any) -> int:
        import asyncio

        self._fixtrace_watch = asyncio.get_running_loop().create_task(_watch_loop(out))
        return await orig_start(self, *args, **kwargs)

    fgw.FixGateway.start = start  # type: ignore[method-assign]
    fs.FixSession.data_received = data_received  # type: ignore[method-assign]
    fs.FixSession._submit_staged = submit  # type: ignore[method-assign]
    fs.FixSession._on_reply = on_reply  # type: ignore[method-assign]
    fs.FixSession.flush = flush  # type: ignore[method-assign]
    gc.callbacks.append(gc_cb)


async def _watch_loop(out: Any) -> None:
    """Log the event loop's late wake-ups (> 3 ms after a 1 ms timer): the process was busy
    (a long callback) or not scheduled by the kernel."""
    import asyncio

    while True:
        t = _clock()
        await asyncio.sleep(0.001)
        late = _clock() - t - 1_000_000
        if late > 3_000_000:
            out.write(f"# loop_late {t} {late}\n")


def _install_client(path: str) -> None:
    from tickline.gateway.fix import load

    out = open(path, "w", buffering=1 << 20)  # noqa: SIM115
    state = {"read": 0}
    sent: dict[bytes, int] = {}
    orig_data = load._Conn.data_received
    orig_flush = load._Conn.flush
    orig_queue = load._Conn.queue
    orig_msg = load._FixRun.on_message
    queued: list[bytes] = []

    def data_received(self: Any, data: bytes) -> None:
        state["read"] = _clock()
        orig_data(self, data)

    def queue(self: Any, msg_type: str, body: bytes) -> None:
        if msg_type in ("D", "F"):
            queued.append(load._field(b"\x01" + body, b"\x0111="))
        orig_queue(self, msg_type, body)

    def flush(self: Any) -> None:
        orig_flush(self)
        t = _clock()
        for clid in queued:
            sent[clid] = t
        queued.clear()

    def on_message(self: Any, c: Any, mt: bytes, raw: bytes) -> None:
        clid = load._field(raw, b"\x0111=")
        got = self.planned.get(clid)
        orig_msg(self, c, mt, raw)
        if got is not None and clid not in self.planned:
            out.write(f"{clid.decode()}\t{got[0]}\t{sent.pop(clid, 0)}\t{state['read']}\t"
                      f"{_clock()}\t{int(got[1] >= self.measure_from)}\n")

    orig_run = load.run_fix_load

    async def run_fix_load(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        watch = asyncio.get_running_loop().create_task(_watch_loop(out))
        try:
            return await orig_run(*args, **kwargs)
        finally:
            watch.cancel()

    load.run_fix_load = run_fix_load  # type: ignore[assignment]
    load._Conn.data_received = data_received  # type: ignore[method-assign]
    load._Conn.queue = queue  # type: ignore[method-assign]
    load._Conn.flush = flush  # type: ignore[method-assign]
    load._FixRun.on_message = on_message  # type: ignore[method-assign]


def _pct(v: list[int], q: float) -> float:
    return v[min(len(v) - 1, int(q * len(v)))] / 1e6 if v else 0.0


def join(srv_path: str, cli_path: str) -> None:
    srv: dict[str, list[int]] = {}
    notes: list[str] = []
    with open(srv_path) as f:
        for line in f:
            if line.startswith("#"):
                notes.append(line)
                continue
            p = line.split("\t")
            srv[p[0]] = [int(x) for x in p[1:]]
    rows = []
    cnotes: list[str] = []
    with open(cli_path) as f:
        for line in f:
            if line.startswith("#"):
                cnotes.append(line)
                continue
            p = line.split("\t")
            if p[5].strip() != "1" or p[0] not in srv:
                continue
            planned, sent, cread, cdone = (int(x) for x in p[1:5])
            s_read, s_sub, s_rep, s_wr = srv[p[0]]
            rows.append((cdone - planned, sent - planned, s_read - sent, s_sub - s_read,
                         s_rep - s_sub, s_wr - s_rep, cread - s_wr, cdone - cread,
                         planned))
    names = ["rtt", "send_lag", "to_srv_read", "srv_parse", "srv_engine", "srv_to_write",
             "to_cli_read", "cli_parse"]
    print(f"{len(rows)} orders joined")
    for k, name in enumerate(names):
        v = sorted(r[k] for r in rows)
        print(f"  {name:13s} p50 {_pct(v, 0.5):8.3f} ms  p99 {_pct(v, 0.99):8.3f} ms  "
              f"max {_pct(v, 1.0):8.3f} ms")
    rows.sort(key=lambda r: r[0])
    tail = rows[int(len(rows) * 0.99):]
    if tail:
        print(f"top 1% ({len(tail)} orders, rtt >= {tail[0][0] / 1e6:.3f} ms): stage means")
        for k, name in enumerate(names):
            print(f"  {name:13s} {sum(r[k] for r in tail) / len(tail) / 1e6:8.3f} ms")
    if rows:
        t0 = min(r[8] for r in rows)
        t1 = max(r[8] for r in rows)
        gcs = [n.split() for n in notes if n.startswith("# gc")]
        gcs = [g for g in gcs if t0 <= int(g[2]) <= t1]
        longs = [n.split() for n in notes if n.startswith("# long_read")]
        longs = [g for g in longs if t0 <= int(g[2]) <= t1]
        for gen in "012":
            d = sorted(int(g[3]) for g in gcs if g[4] == gen)
            if d:
                print(f"server gc gen {gen}: {len(d)} in the window, total "
                      f"{sum(d) / 1e6:.1f} ms, max {d[-1] / 1e6:.2f} ms")
        d = sorted(int(g[3]) for g in longs)
        if d:
            print(f"server reads > 2 ms: {len(d)}, max {d[-1] / 1e6:.2f} ms")
        for who, lines in (("server", notes), ("client", cnotes)):
            for kind in ("loop_late", "store_flush"):
                ev = [n.split() for n in lines if n.startswith(f"# {kind}")]
                ev = [(int(g[2]), int(g[3])) for g in ev if t0 <= int(g[2]) <= t1]
                if ev:
                    top = sorted(ev, key=lambda e: -e[1])[:5]
                    print(f"{who} {kind}: {len(ev)}, total {sum(e[1] for e in ev) / 1e6:.1f}"
                          f" ms, largest at +ms: " + ", ".join(
                              f"{(a - t0) / 1e6:.0f}: {b / 1e6:.1f}" for a, b in top))
        # when the tail orders were planned (+ms from the first measured order)
        marks = sorted(int((r[8] - t0) / 1e6) for r in tail)
        if marks:
            print(f"tail orders planned at +ms: {marks[0]}..{marks[-1]}, "
                  f"median {marks[len(marks) // 2]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["join"]:
        join(sys.argv[2], sys.argv[3])
        sys.exit(0)
    trace = os.environ.get("FIXTRACE", "fixtrace.tsv")
    if sys.argv[1:2] == ["serve"]:
        _install_server(trace)
    elif sys.argv[1:2] == ["loadgen"]:
        _install_client(trace)
    from tickline.cli import main

    sys.exit(main())
