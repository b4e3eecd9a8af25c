"""One shard's deterministic state machine: the input log applied to a matching engine and a
report builder. No I/O, no clock: leader and standby run the same code on the same stream and
hold byte-identical state (compare :meth:`Replica.digest`).

Sequence numbers: one input message (stream sequence ``in_seq``) carries a batch of
commands; the replica numbers the commands with a running counter, ``seq`` = how many
commands the stream holds up to and including this one (1, 2, 3, ... with no gaps, like the
one-process journal's sequence). It is a function of the log alone: every replica, and a
replica started from a snapshot (which records both ``seq`` and ``in_seq``), gives every
command the same number.

Engine time: a logged batch carries the publishing gateway's clock; the replica stamps
``ts = max(logged ts, previous ts + 1)`` command by command, so engine time is strictly
increasing in log order whatever the gateways' clocks do — a function of the log alone,
like everything here.
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
        """The last command sequence number applied (commands applied since the start)."""
        self.in_seq = 0
        """The last input stream sequence applied."""
        self.last_ts = 0

    def apply(self, in_seq: int, logged: Logged) -> list[Done]:
        """Apply the batch at input stream sequence ``in_seq`` (after the last one applied);
        its commands get the next command sequence numbers, in order."""
        if in_seq <= self.in_seq:
            raise ValueError(f"input sequence {in_seq} already applied (at {self.in_seq})")
        self.in_seq = in_seq
        cmds = logged.cmds
        logged_ts = logged.ts
        seq = self.seq
        last_ts = self.last_ts
        for cmd in cmds:  # numbers and engine time first: a function of the log alone
            seq += 1
            last_ts = logged_ts if logged_ts > last_ts else last_ts + 1
            cmd.seq = seq
            cmd.ts = last_ts
        self.seq = seq
        self.last_ts = last_ts
        results = self.engine.process_many(cmds)
        build = self.reports.build
        gateway = logged.gateway
        ticket = logged.ticket
        out = []
        for cmd, events in zip(cmds, results, strict=True):
            build(cmd.seq, cmd.ts, events)
            out.append(Done(gateway, ticket, cmd, events))
            ticket += 1
        return out

    def skip(self, in_seq: int) -> None:
        """Pass over input message ``in_seq`` without a command (it could not be decoded:
        every replica skips it alike)."""
        if in_seq <= self.in_seq:
            raise ValueError(f"input sequence {in_seq} already applied (at {self.in_seq})")
        self.in_seq = in_seq

    def digest(self) -> str:
        """The engine digest (equal digests: replicas that behave identically from here)."""
        return self.engine.digest()

    def snapshot(self, out_seq: int = 0) -> Snapshot:
        snap = self.engine.snapshot()
        snap.attachments[ReportBuilder.key] = self.reports.state()
        return Snapshot(self.shard, self.seq, self.last_ts, out_seq, snap, self.in_seq)

    @classmethod
    def from_snapshot(cls, snap: Snapshot, instruments: Iterable[Instrument],
                      config: EngineConfig | None = None) -> Replica:
        r = cls(instruments, config, shard=snap.shard)
        r.engine.restore(snap.engine)
        r.reports = ReportBuilder(r.engine.orders.values(),
                                  snap.engine.attachments.get(ReportBuilder.key))
        r.seq = snap.seq
        r.in_seq = snap.in_seq or snap.seq
        r.last_ts = snap.last_ts
        return r
