"""The ``tickline`` command line: serve, demo, bench, replay, journal, loadgen, admin, account.

Each command imports its implementation lazily so that ``tickline --help`` stays instant and
one subsystem's dependencies never slow another's start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="tickline: a real-time event engine and a working exchange built on it.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: print throughput and latency percentiles, write JSON.",
                        no_args_is_help=True)
journal_app = typer.Typer(help="Operate on a journal directory: verify, dump.",
                          no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(journal_app, name="journal")

JsonOption = Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")]


def _version(value: bool) -> None:
    if value:
        from tickline import __version__
        from tickline._build import describe

        typer.echo(f"tickline {__version__}, {describe()}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print the version and the build (pure or compiled, which modules).")] = False,
) -> None:
    """tickline: a real-time event engine and a working exchange built on it."""


@app.command("build")
def build(action: Annotated[str, typer.Argument(
        help="compile | auto (compile if a C compiler is there) | clean (pure) | status")
        ] = "status") -> None:
    """The optional compiled build of the engine's hot path (mypyc; see docs/benchmarks.md)."""
    from tickline._build import main as build_main

    raise typer.Exit(build_main([action]))


# --- bench matching (issue 2) -------------------------------------------------------------

@bench_app.command("matching")
def bench_matching(
    commands: Annotated[int, typer.Option(help="Commands to run (after warm-up).")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Workload generator seed.")] = 1,
    symbols: Annotated[int, typer.Option(help="Symbols the mix is spread over.")] = 1,
    seed_port: Annotated[bool, typer.Option(
        help="Also run the straight port of the seed's order book for the ratio.")] = True,
    seed_port_commands: Annotated[int, typer.Option(
        help="Commands the (slow) seed port runs; its rate is compared per second.")] = 200_000,
    memory_orders: Annotated[int, typer.Option(
        help="Resting orders for the memory pass (0: skip).")] = 1_000_000,
    latency_runs: Annotated[int, typer.Option(
        help="Latency passes; >1 tells engine tails (same commands) from machine noise.")] = 1,
    risk: Annotated[bool, typer.Option(
        help="Also time throughput with generous risk limits on every account, "
             "alternating with limits off.")] = False,
    risk_rounds: Annotated[int, typer.Option(help="Off/on rounds for --risk.")] = 3,
    mix: Annotated[bool, typer.Option(
        help="Also time the mix with 5% stops and 5% icebergs, alternating with the plain "
             "mix.")] = False,
    peers: Annotated[bool, typer.Option(
        help="Also time the pure and compiled builds and liquibook (peers extra) on the "
             "same commands, one process per run.")] = False,
    peer_rounds: Annotated[int, typer.Option(
        help="Interleaved rounds for --peers (many short rounds: median and spread).")] = 9,
    scale: Annotated[bool, typer.Option(
        help="Also time 1k..1M resting orders over 10 and 100,000 ticks.")] = False,
    scale_commands: Annotated[int, typer.Option(
        help="Commands per --scale cell.")] = 100_000,
    scale_resting: Annotated[str, typer.Option(
        help="Comma-separated resting-order sizes for --scale.")
        ] = "1000,10000,100000,1000000",
    json_path: JsonOption = None,
) -> None:
    """Run the exchange-core mix through the matching engine (and the seed's port)."""
    from tickline.bench.matching import run

    run(commands=commands, seed=seed, symbols=symbols, with_seed_port=seed_port,
        seed_port_commands=seed_port_commands, memory_orders=memory_orders,
        latency_runs=latency_runs, json_path=json_path, risk=risk, risk_rounds=risk_rounds,
        mix=mix, peers=peers, peer_rounds=peer_rounds, scale=scale,
        scale_commands=scale_commands,
        scale_resting=tuple(int(x) for x in scale_resting.split(",") if x))


@bench_app.command("exchange")
def bench_exchange(
    commands: Annotated[int, typer.Option(help="Commands to run.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Workload generator seed.")] = 1,
    batch: Annotated[int, typer.Option(help="Commands per submit_many + pump.")] = 64,
    json_path: JsonOption = None,
) -> None:
    """The in-process exchange loop (sequence, match, journal none/batch, publish, reports)."""
    from tickline.bench.exchange import run

    run(commands=commands, seed=seed, batch=batch, json_path=json_path)


# --- serve (issue 5) -----------------------------------------------------------------------

@app.command("serve")
def serve_command(
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML configuration (default: embedded demo defaults).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Binary order-entry port (0: any).")] = None,
    http_port: Annotated[int | None, typer.Option(
        "--http-port", help="HTTP/WebSocket port (0: any).")] = None,
    journal_dir: Annotated[str | None, typer.Option(
        "--journal-dir", help="Journal directory.")] = None,
    durability: Annotated[str | None, typer.Option(
        help="Journal durability: none, batch or interval.")] = None,
    shards: Annotated[int | None, typer.Option(
        help="Engine processes, one per shard, each journaling in <journal-dir>/shard-K "
             "(0: the engine runs in the gateway process).")] = None,
    cluster: Annotated[str | None, typer.Option(
        help="Cluster mode: NATS URL(s) of the JetStream cluster; this process is a "
             "gateway, the engines run as `tickline cluster-engine`.")] = None,
    cluster_shards: Annotated[int | None, typer.Option(
        "--cluster-shards", help="Cluster mode: number of shards.")] = None,
    fix_port: Annotated[int | None, typer.Option(
        "--fix-port", help="FIX 4.4 acceptor port (0: any; default: off).")] = None,
) -> None:
    """Run the exchange: binary order entry, HTTP metrics/health/book, the dashboard, and
    the FIX 4.4 acceptor when --fix-port (or fix.port in the configuration) is given."""
    import logging

    from tickline.config import ConfigError, load_config
    from tickline.server import event_loop_name, run_event_loop, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_config(config, host=host, port=port, http_port=http_port,
                          journal_dir=journal_dir, durability=durability, shards=shards,
                          cluster=cluster, cluster_shards=cluster_shards)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if fix_port is not None:
        cfg.fix.port = fix_port

    def ready(server: Any) -> None:
        rec = server.exchange.recovery
        if rec is not None and rec.records_replayed:
            typer.echo(f"recovered {rec.records_replayed} commands up to seq {rec.last_seq} "
                       f"in {rec.seconds:.2f}s")
        typer.echo(f"tickline serving on {cfg.server.host} ({event_loop_name()}): "
                   f"binary port {server.port}, http://{cfg.server.host}:{server.http_port}/ "
                   f"journal {cfg.server.journal_dir} ({cfg.server.durability})")
        fix = f" fix_port={server.fix_port}" if server.fix is not None else ""
        typer.echo(f"READY port={server.port} http_port={server.http_port}{fix}", err=False)

    from tickline.journal import JournalError
    from tickline.shard import ShardMapChanged

    try:
        code = run_event_loop(serve(cfg, ready=ready))
    except (JournalError, ShardMapChanged) as e:  # e.g. JournalLocked, another shard count
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("cluster-engine")
def cluster_engine_command(
    cluster: Annotated[str, typer.Option(help="NATS URL(s) of the JetStream cluster.")],
    shard: Annotated[int, typer.Option(help="The shard this engine serves.")] = 0,
    config: Annotated[Path | None, typer.Option(
        "--config", help="TOML configuration (instruments, engine settings).")] = None,
    lease: Annotated[float, typer.Option(
        help="Leadership lease in seconds (the KV bucket's TTL).")] = 1.0,
    snapshot_every: Annotated[int, typer.Option(
        "--snapshot-every", help="Snapshot to the object store every N commands (0: off).")]
        = 100_000,
    node_id: Annotated[str | None, typer.Option("--node-id", help="Name of this node.")] = None,
    replicas: Annotated[int, typer.Option(
        help="JetStream replicas of streams and buckets it creates (3 on a 3-node cluster).")]
        = 1,
) -> None:
    """Run one shard's engine in cluster mode: leader, or standby until it takes over."""
    import logging

    from tickline.cluster.run import run_engine
    from tickline.config import ConfigError, load_config
    from tickline.server import run_event_loop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = load_config(config)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_event_loop(run_engine(
        cfg, cluster, shard=shard, lease_s=lease, snapshot_every=snapshot_every,
        node_id=node_id, replicas=replicas)))


@bench_app.command("cluster")
def bench_cluster(
    rate: Annotated[list[float] | None, typer.Option(
        help="Offered orders/s (repeat for several).")] = None,
    duration: Annotated[float, typer.Option(help="Seconds of load per run.")] = 5.0,
    runs: Annotated[int, typer.Option(help="Load runs per rate (the median is kept).")] = 3,
    failovers: Annotated[int, typer.Option(help="Leader SIGKILLs to time (0: skip).")] = 5,
    lease: Annotated[float, typer.Option(help="Leadership lease (s).")] = 1.0,
    sessions: Annotated[int, typer.Option(help="Load generator sessions.")] = 4,
    send_interval: Annotated[float, typer.Option(
        "--send-interval", help="Load generator: 0 spins to each planned send time; > 0 "
        "sends what is due every this many seconds (the wait counts in the round trip).")
    ] = 0.0,
    loadgen_wait: Annotated[str, typer.Option(
        "--loadgen-wait", help="Load generator between planned sends (loadgen --wait): "
        "sleep (in the kernel; leaves the shared cores to the cluster) or spin.")] = "sleep",
    batches_in_flight: Annotated[int | None, typer.Option(
        "--batches-in-flight", min=0, help="The gateway's [server] cluster_batches_in_flight "
        "(default: the configuration's).")] = None,
    json_path: JsonOption = None,
) -> None:
    """Cluster mode on this machine: loadgen through NATS JetStream, and failover time."""
    from tickline.bench.cluster import run

    if loadgen_wait not in ("spin", "sleep"):
        typer.echo(f"error: --loadgen-wait must be spin or sleep, not {loadgen_wait!r}",
                   err=True)
        raise typer.Exit(2)
    run(rates=rate or [10_000.0], duration=duration, runs=runs, failovers=failovers,
        lease=lease, sessions=sessions, json_path=json_path, send_interval=send_interval,
        wait=loadgen_wait, batches_in_flight=batches_in_flight)


@app.command("demo")
def demo_command(
    duration: Annotated[float | None, typer.Option(
        help="Seconds to run (default: until Ctrl-C).")] = None,
    port: Annotated[int, typer.Option(help="Binary order-entry port (0: any).")] = 7001,
    http_port: Annotated[int, typer.Option(
        "--http-port", help="Dashboard/HTTP port (0: any).")] = 8080,
    journal_dir: Annotated[str | None, typer.Option(
        "--journal-dir", help="Journal directory (default: a fresh temporary one).")] = None,
    makers: Annotated[int, typer.Option(help="Simulated market makers (1-4).")] = 4,
    takers: Annotated[int, typer.Option(help="Simulated takers (0-3).")] = 2,
    pace: Annotated[float, typer.Option(
        help="Mean seconds between one maker's orders (takers: 4x).")] = 0.002,
    seed: Annotated[int, typer.Option(help="Seed of the simulated traders.")] = 1,
) -> None:
    """A live local market: the exchange, simulated traders and the dashboard."""
    import logging
    import shutil

    from tickline.demo import demo, demo_config
    from tickline.server import run_event_loop

    logging.basicConfig(level=logging.WARNING)
    cfg = demo_config(journal_dir, port, http_port)
    try:
        run_event_loop(demo(cfg, duration=duration, makers=makers, takers=takers, pace=pace,
                            seed=seed))
    finally:
        if journal_dir is None:  # the fresh temporary journal goes with the demo
            shutil.rmtree(Path(cfg.server.journal_dir).parent, ignore_errors=True)


# --- (other subsystems register their commands below) --------------------------------------


# --- loadgen (issue 5: binary order entry) -------------------------------------------------

@app.command("loadgen")
def loadgen_command(
    port: Annotated[int, typer.Option(help="Binary order-entry port of the server.")] = 7001,
    host: Annotated[str, typer.Option(help="Server address.")] = "127.0.0.1",
    rate: Annotated[float, typer.Option(help="Offered orders per second (open loop).")] = 10_000,
    duration: Annotated[float, typer.Option(help="Seconds of load.")] = 10.0,
    sessions: Annotated[int, typer.Option(help="Connections the load is spread over.")] = 4,
    key: Annotated[str, typer.Option(help="Account key (default: the demo account).")
                   ] = "demo-key-1",
    symbol: Annotated[str | None, typer.Option(
        help="Instrument (default: the first the server lists).")] = None,
    warmup: Annotated[float, typer.Option(
        help="Seconds at the start not counted in the results.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Order-mix seed.")] = 1,
    send_interval: Annotated[float, typer.Option(
        "--send-interval", help="0: spin to each planned send time; > 0: send what is due "
        "every this many seconds (leaves the CPU to the server; the wait is counted in the "
        "round trip). Both protocols.")] = 0.0,
    wait: Annotated[str, typer.Option(
        help="Both senders, between planned sends under ~1 ms apart: spin (yield to the "
             "loop; keeps a core busy) or sleep (in the kernel until the planned time; "
             "for a generator sharing the cores with the server).")] = "spin",
    json_path: JsonOption = None,
    protocol: Annotated[str, typer.Option(
        help="binary, fix, or both (binary then FIX, same rate: latency ratios).")] = "binary",
    fix_port: Annotated[int, typer.Option("--fix-port", help="FIX acceptor port.")] = 9878,
    fix_sessions: Annotated[str | None, typer.Option(
        "--fix-sessions", help="FIX sessions SENDER:PASSWORD,... (default MM1..MM4).")
    ] = None,
) -> None:
    """Open-loop load at a fixed rate; round-trip percentiles from planned send times."""
    from tickline.loadgen import LoadConfig, run

    if protocol not in ("binary", "fix", "both"):
        typer.echo("error: --protocol must be binary, fix or both", err=True)
        raise typer.Exit(2)
    if wait not in ("spin", "sleep"):
        typer.echo(f"error: --wait must be spin or sleep, not {wait!r}", err=True)
        raise typer.Exit(2)
    cfg = LoadConfig(host=host, port=port, key=key, rate=rate, duration=duration,
                     sessions=sessions, symbol=symbol, warmup=warmup, seed=seed,
                     send_interval=send_interval, wait=wait)
    raise typer.Exit(run(cfg, json_path, protocol=protocol, fix_port=fix_port,
                         fix_sessions=fix_sessions))


# --- bench processor (issue 3, part 1: tickline.core) -------------------------------------

@bench_app.command("processor")
def bench_processor(
    events: Annotated[int, typer.Option(help="Events through the processor.")] = 2_000_000,
    chunk: Annotated[int, typer.Option(help="Events per submit_many call.")] = 256,
    baseline_events: Annotated[int, typer.Option(
        help="Events through queue.Queue and the seed port.")] = 300_000,
    workers: Annotated[int, typer.Option(help="Threads for the baselines.")] = 2,
    paced_rate: Annotated[int, typer.Option(
        help="Open-loop rate (events/s) for the latency run (0 = skip).")] = 100_000,
    shm_records: Annotated[int, typer.Option(help="64-byte records via the shm ring.")
                           ] = 4_000_000,
    mpq_records: Annotated[int, typer.Option(help="64-byte records via mp.Queue.")] = 200_000,
    gc_events: Annotated[int, typer.Option(
        help="Events per gc-settings trial (0 = skip the gc comparison).")] = 1_000_000,
    json_path: JsonOption = None,
) -> None:
    """Event processor vs queue.Queue vs the seed's port; shm ring vs multiprocessing.Queue."""
    from tickline.bench.processor import run

    run(events=events, chunk=chunk, baseline_events=baseline_events, workers=workers,
        paced_rate=paced_rate, shm_records=shm_records, mpq_records=mpq_records,
        gc_events=gc_events, json_path=json_path)


# --- bench shards (issue 12 item 1) ---------------------------------------------------------

@bench_app.command("shards")
def bench_shards(
    shards: Annotated[str, typer.Option(help="Shard counts to compare, e.g. 1,2.")] = "1,2",
    commands: Annotated[int, typer.Option(help="Timed commands per shard.")] = 200_000,
    symbols_per_shard: Annotated[int, typer.Option(help="Symbols per shard.")] = 2,
    runs: Annotated[int, typer.Option(help="Interleaved runs per shard count.")] = 5,
    batch: Annotated[int, typer.Option(help="Commands per ring frame.")] = 256,
    json_path: JsonOption = None,
) -> None:
    """Pre-encoded exchange-core-mix commands over the shm rings to 1, then N shard processes."""
    from tickline.bench.shards import run

    run(shard_counts=[int(x) for x in shards.split(",")], commands=commands,
        symbols_per_shard=symbols_per_shard, runs=runs, batch=batch, json_path=json_path)


# --- bench stream (issue 4) ---------------------------------------------------------------

@bench_app.command("stream")
def bench_stream(
    commands: Annotated[int, typer.Option(help="Commands of the exchange-core mix.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Workload generator seed.")] = 1,
    batch: Annotated[int, typer.Option(help="Commands per publish_batch call.")] = 100,
    capacity: Annotated[int, typer.Option(help="Per-subscriber queue capacity.")] = 10_000,
    uvloop: Annotated[bool, typer.Option(help="Run on uvloop (else asyncio).")] = True,
    json_path: JsonOption = None,
) -> None:
    """Fan out the mix's market data to 1, 10, 100 subscribers (and with one stalled)."""
    from tickline.bench.stream import run

    run(commands=commands, seed=seed, batch=batch, capacity=capacity, use_uvloop=uvloop,
        json_path=json_path)


# --- journal: replay, journal verify/dump, bench journal (issue 3, part 2) ----------------

@app.command("replay")
def replay_cmd(
    directory: Annotated[Path, typer.Argument(help="Journal directory.")],
    to: Annotated[int | None, typer.Option("--to", help="Stop after this sequence number.")] = None,
    symbol: Annotated[str | None, typer.Option(help="Print only this symbol's book.")] = None,
    json_path: JsonOption = None,
    compare: Annotated[Path | None, typer.Option(
        help="Replay this second journal alongside, event by event; exit 1 on divergence.")
    ] = None,
    levels: Annotated[int, typer.Option(help="Depth levels to print per side.")] = 10,
    snapshot: Annotated[bool, typer.Option(
        help="Start from the newest snapshot at or before --to (same result, faster).")] = True,
) -> None:
    """Rebuild the engine state from a journal; print the book(s) and the state digest."""
    from tickline.journal.tools import run_replay

    raise typer.Exit(run_replay(directory, to_seq=to, symbol=symbol, json_path=json_path,
                                compare=compare, levels=levels, use_snapshot=snapshot))


@journal_app.command("verify")
def journal_verify(
    directory: Annotated[Path, typer.Argument(help="Journal directory.")],
) -> None:
    """Check every segment and snapshot; exit 1 on corruption, naming file and offset."""
    from tickline.journal.tools import run_verify

    raise typer.Exit(run_verify(directory))


@journal_app.command("dump")
def journal_dump(
    directory: Annotated[Path, typer.Argument(help="Journal directory.")],
    from_seq: Annotated[int, typer.Option("--from", help="First sequence number.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many records (0 = all).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print journal records (sequence, type, file:offset, decoded command)."""
    from tickline.journal.tools import run_dump

    raise typer.Exit(run_dump(directory, from_seq=from_seq, limit=limit or None,
                              as_json=as_json))


@bench_app.command("journal")
def bench_journal(
    records: Annotated[int, typer.Option(help="Exchange-core commands to journal.")] = 1_000_000,
    keep: Annotated[Path | None, typer.Option(
        help="Leave the exchange-loop journal here (for tickline replay).")] = None,
    json_path: JsonOption = None,
    recovery_records: Annotated[int, typer.Option(
        help="Size of the journal for the recovery benchmark (0 = skip).")] = 10_000_000,
    batch: Annotated[int, typer.Option(help="Records per commit.")] = 500,
    seed: Annotated[int, typer.Option(help="Workload generator seed.")] = 1,
    full_recovery: Annotated[bool, typer.Option(
        help="Also time recovery with no snapshot (replays every record).")] = True,
) -> None:
    """Journal appends/s and MB/s per durability policy, replay rate and recovery time."""
    from tickline.bench.journal import run

    run(records=records, keep=keep, json_path=json_path, recovery_records=recovery_records,
        batch=batch, seed=seed, full_recovery=full_recovery)



@bench_app.command("venue")
def bench_venue(
    missed: Annotated[int, typer.Option(help="Reports a resuming session missed.")] = 100_000,
    mass: Annotated[int, typer.Option(help="Open orders one mass cancel cancels.")] = 10_000,
    json_path: JsonOption = None,
) -> None:
    """Resume time for missed reports (journal, snapshot, memory) and mass cancel time."""
    from tickline.bench.venue import run

    run(missed=missed, mass=mass, json_path=json_path)


@bench_app.command("lanes")
def bench_lanes(
    capacity: Annotated[int, typer.Option(help="Inbound ring slots (kept full).")] = 8192,
    max_batch: Annotated[int, typer.Option(help="Commands per batch.")] = 1024,
    cancels: Annotated[int, typer.Option(help="Cancels measured.")] = 100,
    cancel_every: Annotated[int, typer.Option(help="Batches between cancels.")] = 4,
    json_path: JsonOption = None,
) -> None:
    """Queue wait of cancels vs new orders with the ring full, with and without lanes."""
    from tickline.bench.lanes import run

    run(capacity=capacity, max_batch=max_batch, cancels=cancels, cancel_every=cancel_every,
        json_path=json_path)


@bench_app.command("ws-fanout")
def bench_ws_fanout(
    clients: Annotated[int, typer.Option(help="WebSocket clients (another process).")] = 100,
    seconds: Annotated[float, typer.Option(help="Seconds of order flow.")] = 5.0,
    chunk: Annotated[int, typer.Option(help="Commands submitted per loop turn.")] = 1000,
    json_path: JsonOption = None,
) -> None:
    """WebSocket market-data fan-out (JSON) to many clients: messages/s delivered."""
    from tickline.bench.wsfanout import run

    run(clients=clients, seconds=seconds, chunk=chunk, json_path=json_path)


# --- admin ------------------------------------------------------------------------------------

admin_app = typer.Typer(help="Admin actions on a running server (halt, resume, kill, enable), "
                             "over its HTTP port with the admin key.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")

UrlOption = Annotated[str, typer.Option(
    help="The server's HTTP address.", envvar="TICKLINE_HTTP")]
KeyOption = Annotated[str, typer.Option(
    help="The admin key (server.admin_key in the configuration).", envvar="TICKLINE_ADMIN_KEY")]


def _admin(url: str, key: str, action: str, query: str) -> None:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url.rstrip('/')}/admin/{action}?{query}", method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Length": "0"})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            typer.echo(json.dumps(json.loads(resp.read())))
    except urllib.error.HTTPError as e:
        with e:
            body = e.read().decode(errors="replace")
        typer.echo(f"error: {e.code}: {body}", err=True)
        raise typer.Exit(1) from None
    except (urllib.error.URLError, OSError) as e:
        typer.echo(f"error: cannot reach {url}: {e}", err=True)
        raise typer.Exit(1) from None


@admin_app.command("halt")
def admin_halt(symbol: str, url: UrlOption = "http://127.0.0.1:8080", key: KeyOption = "") -> None:
    """Halt trading in SYMBOL (journaled; shows on status.SYMBOL)."""
    from urllib.parse import urlencode

    _admin(url, key, "halt", urlencode({"symbol": symbol}))


@admin_app.command("resume")
def admin_resume(symbol: str, url: UrlOption = "http://127.0.0.1:8080",
                 key: KeyOption = "") -> None:
    """Resume trading in SYMBOL."""
    from urllib.parse import urlencode

    _admin(url, key, "resume", urlencode({"symbol": symbol}))


@admin_app.command("kill")
def admin_kill(account: int, url: UrlOption = "http://127.0.0.1:8080",
               key: KeyOption = "") -> None:
    """Kill switch: cancel all of ACCOUNT's orders and reject its new ones until enabled."""
    _admin(url, key, "kill", f"account={account}")


@admin_app.command("enable")
def admin_enable(account: int, url: UrlOption = "http://127.0.0.1:8080",
                 key: KeyOption = "") -> None:
    """Lift ACCOUNT's kill switch."""
    _admin(url, key, "enable", f"account={account}")


# --- account (a member's view of its orders and reports) ----------------------------------------

account_app = typer.Typer(help="Your account on a running server, over the binary port: open "
                               "orders, order status, mass cancel, reports (resume, drop copy).",
                          no_args_is_help=True)
app.add_typer(account_app, name="account")

PortOption = Annotated[int, typer.Option(help="Binary order-entry port.")]
HostOption = Annotated[str, typer.Option(help="Server address.")]
AccountKey = Annotated[str, typer.Option("--key", help="Account key.",
                                         envvar="TICKLINE_KEY")]


def _state_json(state: Any) -> str:
    import msgspec

    from tickline.gateway.protocol import OrderStatus

    row: dict[str, Any] = msgspec.structs.asdict(state)

    row["status"] = OrderStatus(row["status"]).name.lower()
    avg = state.avg_price
    row["avg_price"] = str(avg) if avg is not None else None
    return msgspec.json.encode(row).decode()


def _account_call(host: str, port: int, key: str, what: Any, **connect: Any) -> None:
    import asyncio

    from tickline.client import Client, ClientError

    async def go() -> None:
        client = await Client.connect(host, port, key, **connect)
        try:
            await what(client)
        finally:
            client.close()
            await client.wait_closed()

    try:
        asyncio.run(go())
    except ClientError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


@account_app.command("open-orders")
def account_open_orders(symbol: Annotated[str | None, typer.Argument()] = None,
                        key: AccountKey = "demo-key-1", host: HostOption = "127.0.0.1",
                        port: PortOption = 7001) -> None:
    """The account's open orders (one JSON object a line)."""
    async def what(client: Any) -> None:
        for state in await client.open_orders(symbol):
            typer.echo(_state_json(state))
    _account_call(host, port, key, what)


@account_app.command("status")
def account_status(symbol: str, order_id: Annotated[int, typer.Argument()] = 0,
                   client_order_id: Annotated[str, typer.Option()] = "",
                   key: AccountKey = "demo-key-1", host: HostOption = "127.0.0.1",
                   port: PortOption = 7001) -> None:
    """One order's state, by engine ORDER_ID or --client-order-id."""
    async def what(client: Any) -> None:
        typer.echo(_state_json(await client.order_status(symbol, order_id,
                                                         client_order_id=client_order_id)))
    _account_call(host, port, key, what)


@account_app.command("mass-cancel")
def account_mass_cancel(symbol: Annotated[str | None, typer.Argument()] = None,
                        side: Annotated[str | None, typer.Option(help="buy or sell")] = None,
                        key: AccountKey = "demo-key-1", host: HostOption = "127.0.0.1",
                        port: PortOption = 7001) -> None:
    """Cancel every open order of the account (optionally one symbol and/or side)."""
    async def what(client: Any) -> None:
        cancelled = await client.mass_cancel(symbol, side)
        typer.echo(f"cancelled {len(cancelled)} orders")
    _account_call(host, port, key, what)


@account_app.command("reports")
def account_reports(resume_from: Annotated[int, typer.Option(
                        help="Print every report numbered above this one first.")] = 0,
                    follow: Annotated[bool, typer.Option(
                        help="Keep printing live reports until Ctrl-C.")] = False,
                    drop_copy: Annotated[bool, typer.Option(
                        help="Open a read-only drop copy (every session's reports).")] = True,
                    key: AccountKey = "demo-key-1", host: HostOption = "127.0.0.1",
                    port: PortOption = 7001) -> None:
    """The account's reports after --resume-from (one JSON array a line, as on the wire)."""
    import asyncio

    import msgspec

    async def what(client: Any) -> None:
        assert client.ack is not None
        last = client.ack.last_report_seq
        it = aiter(client.reports())
        while client.last_report_seq < last or follow:
            try:
                report = await asyncio.wait_for(anext(it), None if follow else 10)
            except (StopAsyncIteration, TimeoutError):
                break
            typer.echo(msgspec.json.encode([type(report).__name__,
                                            msgspec.to_builtins(report)]).decode())
    try:
        _account_call(host, port, key, what, resume_from=resume_from,
                      kind="drop_copy" if drop_copy else "trading")
    except KeyboardInterrupt:
        pass


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
