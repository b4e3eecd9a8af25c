"""One shard's deterministic state machine: the input log applied to a matching engine and a
report builder. No I/O, no clock: leader and standby run the same code on the same stream and
hold byte-identical state (compare :meth:`Replica.digest`).

Engine time: a logged command carries the publishing gateway's clock; the replica stamps
``ts = max(logged ts, previous ts + 1)`` so engine time is strictly increasing in stream
order whatever the gateways' clocks do — a function of the log alone, like everything here.
"""

from __future__ import annotations

from collections.abc import Iterable

from tickline.cluster.shardmap import ShardMap
from tickline.cluster.wire import Done, Logged, Snapshot
from tickline.matching import EngineConfig, Instrument, MatchingEngine
from tickline.stream.reports import ReportBuilder

__all__ = ["Replica"]


class Replica:
    """Shard ``shard``'s engine + report builder, at input sequence :attr:`seq`."""

    def __init__(self, instruments: Iterable[Instrument], config: EngineConfig | None = None,
                 *, shard: int = 0) -> None:
        self.instruments = list(instruments)
        self.config = config or EngineConfig()
        self.shard = shard
        self.engine = MatchingEngine(self.instruments, self.config)
        base = ShardMap.id_base(shard)
        self.engine.next_order_id = base + 1
        self.engine.next_trade_id = base + 1
        self.reports = ReportBuilder()
        self.seq = 0
        self.last_ts = 0

    def apply(self, seq: int, logged: Logged) -> Done:
        """Apply the command at stream sequence ``seq`` (must be the next one)."""
        if seq <= self.seq:
            raise ValueError(f"sequence {seq} already applied (at {self.seq})")
        cmd = logged.cmd
        ts = logged.ts if logged.ts > self.last_ts else self.last_ts + 1
        cmd.seq = seq
        cmd.ts = ts
        self.seq = seq
        self.last_ts = ts
        events = self.engine.process(cmd)
        self.reports.build(seq, ts, events)
        return Done(logged.gateway, logged.ticket, cmd, events)

    def digest(self) -> str:
        """The engine digest (equal digests: replicas that behave identically from here)."""
        return self.engine.digest()

    def snapshot(self, out_seq: int = 0) -> Snapshot:
        snap = self.engine.snapshot()
        snap.attachments[ReportBuilder.key] = self.reports.state()
        return Snapshot(self.shard, self.seq, self.last_ts, out_seq, snap)

    @classmethod
    def from_snapshot(cls, snap: Snapshot, instruments: Iterable[Instrument],
                      config: EngineConfig | None = None) -> Replica:
        r = cls(instruments, config, shard=snap.shard)
        r.engine.restore(snap.engine)
        r.reports = ReportBuilder(r.engine.orders.values(),
                                  snap.engine.attachments.get(ReportBuilder.key))
        r.seq = snap.seq
        r.last_ts = snap.last_ts
        return r
