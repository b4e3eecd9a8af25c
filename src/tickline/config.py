"""Server configuration: a TOML file, embedded defaults, command-line overrides.

``tickline serve`` with no file runs on :data:`DEFAULT_CONFIG` — a few demo instruments and
demo accounts with the documented keys below — so that it works with one command. A TOML file
replaces any part of it::

    [server]
    host = "127.0.0.1"        # bind address (loopback unless told otherwise)
    port = 7001               # binary order entry
    http_port = 8080          # /metrics, /health, /book/<symbol>, dashboard, WebSocket
    journal_dir = "data/journal"
    durability = "batch"      # none | batch | interval
    interval_ms = 5
    snapshot_every = 100000
    gc_freeze = true          # gc.freeze() of the start-up heap once serving (docs/fix.md)
    gc_tuning = false         # gc.freeze() after start-up + raised thresholds (no gain measured)
    admin_key = ""            # POST /admin/halt|resume|kill|enable with "Bearer <key>"; "" = off
    report_history = 4096     # reports per account kept in memory for resume (older: journal)
    inbound_capacity = 65536  # slots of the inbound ring's normal lane ([lanes] high_capacity)
    max_batch = 1024          # commands per exchange batch at most
    shards = 0                # engine processes on this machine (serve --shards N); 0 = in-process
    shard_map = {}            # SYMBOL = shard index: pins (--shards, or cluster_shards in cluster)
    cluster = ""              # cluster mode: NATS URL(s) of the JetStream cluster ("" = off)
    cluster_shards = 1        # cluster mode: shards (input streams), >= 1 (docs/cluster.md)
    cluster_batches_in_flight = 4  # cluster mode: a shard's input batches on the way at once

    [limits]
    max_frame_bytes = 4096
    orders_per_second = 50000 # per session, token bucket; excess rejected (RATE_LIMITED)
    burst = 5000
    max_sessions = 256        # logged-on sessions
    max_in_flight = 10000     # per session: requests sent but not yet answered
    heartbeat_seconds = 10.0  # a session silent for 3x this is closed (cancel on disconnect)
    login_timeout_seconds = 3 # a connection must log on within this
    max_pending_logons = 64   # connections not logged on yet (oldest closed past it) ...
    max_pending_logons_per_address = 32  # ... and per source address
    logon_failures_per_second = 1  # wrong-key logons per source address (after the burst)
    logon_failure_burst = 5
    max_client_order_id_bytes = 64  # UTF-8 bytes; longer ids rejected (CLIENT_ORDER_ID_TOO_LONG)

    [websocket]               # the HTTP port's WebSocket (tickline.gateway.http); defaults:
    max_message_bytes = 4096  # a longer request gets the typed error too_large
    max_frame_bytes = 65536   # above this the connection is closed (1009)
    max_sessions = 256        # WebSocket sessions in all (503 beyond)
    max_anonymous = 128       # of which not logged in (market data only, like the dashboard)
    max_per_address = 32      # not-logged-in sessions per source address
    login_timeout_seconds = 5.0  # a session admitted beyond max_anonymous must log in by then
    login_failures_per_second = 1.0  # wrong-key logins per source address, token bucket ...
    login_failure_burst = 5   # ... then rate_limited without checking the key
    allowed_origins = []      # browser origins besides this server's own, "https://host:port"
    max_subscriptions = 64    # (channel, symbol) pairs per session
    send_timeout = 5.0        # seconds to write one frame before a slow consumer is closed
    write_limit = 262144      # bytes buffered in user space per connection
    # send_buffer = 65536     # SO_SNDBUF per connection (omitted: the OS default)
    bus_capacity = 65536      # per bus subscription of a session
    max_depth_levels = 4096   # pending depth levels per session and symbol before a resync
    trades_capacity = 1000    # pending trades per session and symbol (drop oldest + gap)
    bars_capacity = 100       # pending bars per session and symbol (drop oldest + gap)
    control_capacity = 256    # unread replies per session before it is closed
    exec_capacity = 10000     # unread execution reports per session before it is closed
    requests_per_second = 2000.0  # per session, token bucket ...
    request_burst = 4000      # ... excess gets rate_limited
    stats_interval = 1.0      # seconds between stats samples (dashboard)
    history_per_topic = 1000  # trades/bars messages kept per topic for replay (0 = none)
    replays_per_second = 10.0 # per session (burst twice that): replays have their own budget

    [lanes]                   # priority lanes of the inbound ring (tickline.exchange)
    enabled = true            # cancels and admin commands ahead of new orders and replaces
    starvation_bound = 8      # the normal lane is served at least every N batches
    high_capacity = 4096      # slots of the cancel lane (power of two)

    [deadlines]               # 0 = off; the defaults never fire on a healthy server
    max_queue_ms = 1000       # firm: an order waiting longer is rejected STALE_ORDER (410)
    match_ms = 100            # hard: a batch's match stage over this is counted and logged
    publish_ms = 200          # soft: a batch's release stage over this is counted

    [fix]                     # the FIX 4.4 acceptor (tickline.gateway.fix); off by default
    port = 9878               # or `tickline serve --fix-port P`
    comp_id = "TICKLINE"      # our CompID: the counterparty's TargetCompID (56)
    store_dir = ""            # session store (seqnums, messages for resend); "" = journal_dir/fix
    fsync = false             # fsync the session store after each write
    max_heartbeat_seconds = 300  # the longest HeartBtInt (108) a counterparty may ask for
    sending_time_tolerance = 120.0  # seconds of clock difference accepted in SendingTime (52)
    [[fix.sessions]]          # who may log on: SenderCompID (49) -> account; Password (554) =
    sender_comp_id = "DEMO"   # the account's key (Username 553, when sent, = the account name)
    account = "demo"
    cancel_on_disconnect = false

    [[instruments]]
    symbol = "AAPL"
    tick_size = 1
    price_decimals = 2

    [[accounts]]
    id = 1
    name = "demo"
    key = "demo-key-1"
    stp = 1                   # self-trade prevention: 1 newest, 2 oldest, 3 both, 4 off
    admin = false             # may open a drop copy of every account
    # pre-trade risk limits, checked in the engine (0 or omitted = no limit):
    max_order_quantity = 0    # lots per order (a replace: its new total)
    max_order_notional = 0    # price x quantity per order, in price units x lots
    max_open_orders = 0       # live orders at once, over all symbols
    max_position = 0          # |net filled position| per symbol, counting the new order

Demo accounts (embedded defaults; change them for anything but a demo): ``demo`` (id 1, key
``demo-key-1``), ``alice`` (2, ``alice-key``), ``bob`` (3, ``bob-key-3``), and market makers
``mm1``..``mm4`` (11..14, ``mm1-key-0``..``mm4-key-0``).

Risk limits are part of the engine's configuration, which the journal records: replaying a
journal needs the limits it was written with (see :class:`~tickline.matching.RiskLimits`
for the exact rules, and ``tickline.matching.risk`` for the reject codes).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from tickline.matching import EngineConfig, Instrument, RiskLimits, STPMode
from tickline.matching.risk import LIMIT_FIELDS


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field and the value."""


class ServerSection(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 7001
    http_port: int = 8080
    journal_dir: str = "data/journal"
    durability: str = "batch"
    interval_ms: int = 5
    snapshot_every: int = 100_000
    inbound_capacity: int = 65_536
    max_batch: int = 1_024
    gc_freeze: bool = True  # freeze the start-up heap once serving: short full collections
    gc_tuning: bool = False  # freeze the warm heap, raise GC thresholds: measured no gain
    admin_key: str = ""  # the HTTP admin endpoint's key; "" = the endpoint is off
    report_history: int = 4096  # reports kept in memory per account for resume (0: journal only)
    shards: int = 0  # engine processes (serve --shards N, docs/shards.md); 0: in this process
    shard_map: dict[str, int] = msgspec.field(default_factory=dict)  # SYMBOL = shard index
    cluster: str = ""  # cluster mode: NATS URL(s) of the JetStream cluster ("" = one process)
    cluster_shards: int = 1  # cluster mode: shards (input streams) symbols are spread over
    cluster_batches_in_flight: int = 4  # cluster mode: a shard's new commands wait while this
    # many of its batches are on the way, then go as one message (0: one message per batch)


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-session and per-gateway bounds of the binary order entry.

    ``max_sessions`` bounds *logged-on* sessions only. Connections that have not logged on
    have their own, smaller budget, ``max_pending_logons`` (and ``..._per_address`` per
    source address), each connection at most ``login_timeout_seconds``; past a budget the
    oldest pending connection is closed, so idle sockets cannot lock out honest logons (a
    client opening more connections than that at once from one address, e.g. ``tickline
    loadgen --sessions 50``, needs the limit raised).
    Wrong-key logons are throttled per source address: ``logon_failure_burst`` failures at
    once, then ``logon_failures_per_second``; a throttled address's logons are refused
    without checking the key. Client order ids are at most ``max_client_order_id_bytes``
    (UTF-8), which bounds the memory one resting order costs.
    """

    max_frame_bytes: int = 4_096
    orders_per_second: float = 50_000.0
    burst: int = 5_000
    max_sessions: int = 256
    max_in_flight: int = 10_000
    heartbeat_seconds: float = 10.0
    login_timeout_seconds: float = 3.0
    max_pending_logons: int = 64
    max_pending_logons_per_address: int = 32
    logon_failures_per_second: float = 1.0
    logon_failure_burst: int = 5
    max_client_order_id_bytes: int = 64


class WebSocketConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The ``[websocket]`` section: the limits of :class:`tickline.gateway.http.HttpGateway`
    (see the module docstring above for each field; defaults are the gateway's own)."""

    max_message_bytes: int = 4096
    max_frame_bytes: int = 65536
    max_sessions: int = 256
    max_anonymous: int = 128
    max_per_address: int = 32
    login_timeout_seconds: float = 5.0
    login_failures_per_second: float = 1.0
    login_failure_burst: int = 5
    allowed_origins: tuple[str, ...] = ()
    max_subscriptions: int = 64
    send_timeout: float = 5.0
    write_limit: int = 256 * 1024
    send_buffer: int | None = None
    bus_capacity: int = 65536
    max_depth_levels: int = 4096
    trades_capacity: int = 1000
    bars_capacity: int = 100
    control_capacity: int = 256
    exec_capacity: int = 10000
    requests_per_second: float = 2000.0
    request_burst: int = 4000
    stats_interval: float = 1.0
    history_per_topic: int = 1000
    """Trades/bars messages kept per topic for gap recovery (``replay``); 0 = none."""
    replays_per_second: float = 10.0
    """Per session (burst: twice as many): a replay formats up to ``history_per_topic``
    messages, so it has its own, smaller budget than other requests."""

    def validate(self) -> WebSocketConfig:
        """Check every field; return self. Raises :class:`ConfigError` naming the field."""
        for name in ("max_message_bytes", "max_frame_bytes", "max_sessions", "max_per_address",
                     "login_failure_burst", "max_subscriptions", "write_limit", "bus_capacity",
                     "max_depth_levels", "trades_capacity", "bars_capacity",
                     "control_capacity", "exec_capacity", "request_burst"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"websocket.{name} must be >= 1, got {value}")
        for name in ("login_timeout_seconds", "login_failures_per_second", "send_timeout",
                     "requests_per_second", "stats_interval", "replays_per_second"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"websocket.{name} must be > 0, got {value}")
        if self.max_anonymous < 0:
            raise ConfigError(f"websocket.max_anonymous must be >= 0, got {self.max_anonymous}")
        if self.history_per_topic < 0:
            raise ConfigError(f"websocket.history_per_topic must be >= 0, got "
                              f"{self.history_per_topic}")
        if self.max_frame_bytes < self.max_message_bytes:
            raise ConfigError(
                f"websocket.max_frame_bytes ({self.max_frame_bytes}) must be >= "
                f"max_message_bytes ({self.max_message_bytes})")
        if self.send_buffer is not None and self.send_buffer < 1024:
            raise ConfigError(f"websocket.send_buffer must be >= 1024, got {self.send_buffer}")
        from tickline.gateway.admission import OriginError, parse_origin

        for origin in self.allowed_origins:
            try:
                parse_origin(origin)
            except OriginError as e:
                raise ConfigError(f"websocket.allowed_origins: {e}") from None
        return self


class Lanes(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``[lanes]`` section: the exchange's priority lanes (see :mod:`tickline.exchange`)."""

    enabled: bool = True
    starvation_bound: int = 8
    high_capacity: int = 4096
    """Slots of the cancel lane (power of two; at most ``server.inbound_capacity`` used)."""


class Deadlines(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``[deadlines]`` section, in milliseconds (0 = off): firm on the inbound queue
    wait of new orders and replaces, hard on the match stage, soft on publishing."""

    max_queue_ms: float = 1000.0
    match_ms: float = 100.0
    publish_ms: float = 200.0


class Account(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[accounts]]`` entry: identity, self-trade prevention mode, the ``admin`` flag
    (drop copy of every account) and the pre-trade risk limits (0 = no limit)."""

    id: int
    name: str
    key: str
    stp: int = int(STPMode.CANCEL_NEWEST)
    admin: bool = False
    """May open a drop copy of every account (and use the admin actions)."""
    max_order_quantity: int = 0
    max_order_notional: int = 0
    max_open_orders: int = 0
    max_position: int = 0

    def risk_limits(self) -> RiskLimits:
        """The engine's view of this account's limits."""
        return RiskLimits(max_order_quantity=self.max_order_quantity,
                          max_order_notional=self.max_order_notional,
                          max_open_orders=self.max_open_orders,
                          max_position=self.max_position)


class FixSessionConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[fix.sessions]]`` entry: the counterparty's SenderCompID, the account it trades
    for (by name; its Logon must carry that account's key as Password 554), and whether its
    orders are cancelled when it disconnects."""

    sender_comp_id: str
    account: str
    cancel_on_disconnect: bool = False


class FixConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``[fix]`` section: the FIX 4.4 acceptor (:mod:`tickline.gateway.fix`). ``port``
    None = off (``tickline serve --fix-port P`` turns it on); ``comp_id`` is the acceptor's
    own CompID (the counterparty's TargetCompID); ``store_dir`` "" = ``<journal_dir>/fix``;
    ``fsync`` syncs the session store after each write; ``sending_time_tolerance`` seconds
    of clock difference accepted in SendingTime (52)."""

    port: int | None = None
    comp_id: str = "TICKLINE"
    store_dir: str = ""
    fsync: bool = False
    max_heartbeat_seconds: int = 300
    sending_time_tolerance: float = 120.0
    sessions: list[FixSessionConfig] = msgspec.field(default_factory=list)


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerSection = msgspec.field(default_factory=ServerSection)
    limits: Limits = msgspec.field(default_factory=Limits)
    websocket: WebSocketConfig = msgspec.field(default_factory=WebSocketConfig)
    lanes: Lanes = msgspec.field(default_factory=Lanes)
    deadlines: Deadlines = msgspec.field(default_factory=Deadlines)
    instruments: list[Instrument] = msgspec.field(default_factory=list)
    accounts: list[Account] = msgspec.field(default_factory=list)
    fix: FixConfig = msgspec.field(default_factory=FixConfig)

    def validate(self) -> ServerConfig:
        """Check cross-field rules; return self. Raises :class:`ConfigError`."""
        if not self.instruments:
            raise ConfigError("at least one [[instruments]] entry is required")
        if self.server.report_history < 0:
            raise ConfigError(f"server.report_history must be >= 0, got "
                              f"{self.server.report_history}")
        if self.server.admin_key and len(self.server.admin_key) < 16:
            raise ConfigError(f"server.admin_key must be at least 16 characters (or \"\" for "
                              f"no admin endpoint), got {len(self.server.admin_key)}")
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise ConfigError(f"instrument symbols must be unique, got {symbols}")
        if self.server.shards < 0:
            raise ConfigError(f"server.shards must be >= 0, got {self.server.shards}")
        if self.server.shards and self.server.cluster:
            raise ConfigError("server.shards (one machine) and server.cluster (NATS) are two "
                              "different scale-out modes: choose one")
        if self.server.cluster_batches_in_flight < 0:
            raise ConfigError(f"server.cluster_batches_in_flight must be >= 0, got "
                              f"{self.server.cluster_batches_in_flight}")
        if self.server.cluster_shards < 1:
            raise ConfigError(f"server.cluster_shards must be >= 1, got "
                              f"{self.server.cluster_shards}")
        # shard_map pins symbols in either scale-out mode: its indexes are of that mode's shards
        n_shards, count = ((self.server.cluster_shards, "server.cluster_shards")
                           if self.server.cluster else
                           (max(self.server.shards, 1), "server.shards"))
        for sym, k in self.server.shard_map.items():
            if sym not in symbols:
                raise ConfigError(f"server.shard_map names unknown symbol {sym!r}")
            if not 0 <= k < n_shards:
                raise ConfigError(f"server.shard_map: {sym} = {k} is not a shard index "
                                  f"(0..{n_shards - 1}, {count} = {n_shards})")
        ids = [a.id for a in self.accounts]
        keys = [a.key for a in self.accounts]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"account ids must be unique, got {ids}")
        if len(set(keys)) != len(keys):
            raise ConfigError("account keys must be unique")
        for a in self.accounts:
            if a.id <= 0:
                raise ConfigError(f"account id must be positive, got {a.id} ({a.name!r})")
            if len(a.key) < 8:
                raise ConfigError(f"account {a.name!r}: key must be at least 8 characters")
            if a.stp not in (1, 2, 3, 4):
                raise ConfigError(f"account {a.name!r}: stp must be 1..4, got {a.stp}")
            for name in LIMIT_FIELDS:
                value = getattr(a, name)
                if value < 0:
                    raise ConfigError(f"account {a.name!r}: {name} must be >= 0 "
                                      f"(0 = no limit), got {value}")
        if self.server.durability not in ("none", "batch", "interval"):
            raise ConfigError(
                f"server.durability must be none, batch or interval, got "
                f"{self.server.durability!r}")
        for name in ("port", "http_port"):
            port = getattr(self.server, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"server.{name} must be 0..65535, got {port}")
        if self.limits.max_frame_bytes < 64:
            raise ConfigError(
                f"limits.max_frame_bytes must be >= 64, got {self.limits.max_frame_bytes}")
        cap = self.server.inbound_capacity
        if cap < 1 or cap & (cap - 1):
            raise ConfigError(f"server.inbound_capacity must be a power of two, got {cap}")
        for section, name, low in (("server", "max_batch", 1), ("server", "interval_ms", 0),
                                   ("server", "snapshot_every", 0), ("limits", "burst", 1),
                                   ("limits", "max_sessions", 1),
                                   ("limits", "max_in_flight", 1),
                                   ("limits", "max_client_order_id_bytes", 1),
                                   ("limits", "max_pending_logons", 1),
                                   ("limits", "max_pending_logons_per_address", 1),
                                   ("limits", "logon_failure_burst", 1),
                                   ("limits", "heartbeat_seconds", 0)):
            value = getattr(getattr(self, section), name)
            if value < low:
                raise ConfigError(f"{section}.{name} must be >= {low}, got {value}")
        for name in ("orders_per_second", "login_timeout_seconds",
                     "logon_failures_per_second"):
            value = getattr(self.limits, name)
            if not value > 0:
                raise ConfigError(f"limits.{name} must be > 0, got {value}")
        hc = self.lanes.high_capacity
        if hc < 1 or hc & (hc - 1):
            raise ConfigError(f"lanes.high_capacity must be a power of two, got {hc}")
        if self.lanes.starvation_bound < 1:
            raise ConfigError(f"lanes.starvation_bound must be >= 1, got "
                              f"{self.lanes.starvation_bound}")
        for name in ("max_queue_ms", "match_ms", "publish_ms"):
            value = getattr(self.deadlines, name)
            if not value >= 0:
                raise ConfigError(f"deadlines.{name} must be >= 0 (0 = off), got {value}")
        self.websocket.validate()
        self._validate_fix()
        return self

    def _validate_fix(self) -> None:
        fix = self.fix
        if fix.port is not None and not 0 <= fix.port <= 65535:
            raise ConfigError(f"fix.port must be 0..65535, got {fix.port}")
        if not fix.comp_id or "\x01" in fix.comp_id:
            raise ConfigError(f"fix.comp_id must be a non-empty CompID, got {fix.comp_id!r}")
        names = {a.name for a in self.accounts}
        seen: set[str] = set()
        for s in fix.sessions:
            if not s.sender_comp_id or "\x01" in s.sender_comp_id:
                raise ConfigError(f"fix.sessions: bad sender_comp_id {s.sender_comp_id!r}")
            if s.sender_comp_id in seen:
                raise ConfigError(f"fix.sessions: sender_comp_id {s.sender_comp_id!r} "
                                  "appears twice")
            seen.add(s.sender_comp_id)
            if s.account not in names:
                raise ConfigError(f"fix.sessions: {s.sender_comp_id!r} names unknown account "
                                  f"{s.account!r}")
        if fix.sending_time_tolerance <= 0 or fix.max_heartbeat_seconds < 1:
            raise ConfigError("fix.sending_time_tolerance must be > 0 and "
                              "fix.max_heartbeat_seconds >= 1")

    def engine_config(self) -> EngineConfig:
        """The engine settings implied by the accounts: self-trade prevention modes and the
        risk limits of the accounts that have any (so a configuration without limits gives
        the same engine config, and journal, as before limits existed)."""
        limits = {a.id: a.risk_limits() for a in self.accounts}
        return EngineConfig(account_stp={a.id: a.stp for a in self.accounts},
                            account_limits={i: lim for i, lim in limits.items() if lim.active})

    def account_by_key(self) -> dict[str, Account]:
        return {a.key: a for a in self.accounts}


DEFAULT_INSTRUMENTS = [
    Instrument(symbol="AAPL", tick_size=1, lot_size=1, price_decimals=2, max_quantity=1_000_000),
    Instrument(symbol="MSFT", tick_size=1, lot_size=1, price_decimals=2, max_quantity=1_000_000),
    Instrument(symbol="BTC-USD", tick_size=50, lot_size=1, price_decimals=2, qty_decimals=4,
               max_quantity=100_000_000),
]

DEFAULT_ACCOUNTS = [
    Account(id=1, name="demo", key="demo-key-1"),
    Account(id=2, name="alice", key="alice-key"),
    Account(id=3, name="bob", key="bob-key-3"),
    *(Account(id=10 + i, name=f"mm{i}", key=f"mm{i}-key-0") for i in range(1, 5)),
]


# One FIX session per demo account: SenderCompID = the account name in capitals.
DEFAULT_FIX_SESSIONS = [FixSessionConfig(sender_comp_id=a.name.upper(), account=a.name)
                        for a in DEFAULT_ACCOUNTS]


def _default_fix_sessions(accounts: Any) -> list[dict[str, Any]]:
    """One FIX session per account (SenderCompID = its name in capitals; a name whose
    capitals another account's already took gets none)."""
    out: dict[str, dict[str, Any]] = {}
    for a in accounts if isinstance(accounts, list) else ():
        name = a.get("name") if isinstance(a, dict) else None
        if isinstance(name, str) and name and name.upper() not in out:
            out[name.upper()] = {"sender_comp_id": name.upper(), "account": name}
    return list(out.values())


def default_config() -> ServerConfig:
    """The embedded defaults: demo instruments and demo accounts, loopback, a local journal."""
    return ServerConfig(instruments=list(DEFAULT_INSTRUMENTS),
                        accounts=list(DEFAULT_ACCOUNTS),
                        fix=FixConfig(sessions=list(DEFAULT_FIX_SESSIONS))).validate()


def load_config(path: Path | str | None = None, **overrides: Any) -> ServerConfig:
    """Load ``path`` (TOML) over the embedded defaults, then apply ``overrides`` to the
    ``[server]`` section (``port=...``, ``journal_dir=...``; ``None`` values are ignored).

    Sections given in the file replace the defaults' (a file with ``[[instruments]]``
    lists exactly its instruments)."""
    base = msgspec.to_builtins(default_config())
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config {path} is not valid TOML: {e}") from None
        fix_sessions = isinstance(data.get("fix"), dict) and "sessions" in data["fix"]
        for section in ("server", "limits", "websocket", "lanes", "deadlines", "fix"):
            if section in data:
                if not isinstance(data[section], dict):
                    raise ConfigError(f"[{section}] must be a table")
                base[section].update(data.pop(section))
        base.update(data)
        if not fix_sessions:  # the default FIX sessions follow the file's accounts
            base["fix"]["sessions"] = _default_fix_sessions(base["accounts"])
    for key, value in overrides.items():
        if value is not None:
            base["server"][key] = value
    try:
        config = msgspec.convert(base, ServerConfig)
    except (msgspec.ValidationError, ValueError) as e:
        raise ConfigError(f"invalid configuration: {e}") from None
    return config.validate()
