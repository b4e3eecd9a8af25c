"""Replay of a sharded data directory: every ``shard-K`` journal merged by sequence number.

Each shard journal holds the commands of its symbols (and a copy of every broadcast command:
``TimeTick``, ``SetAccountStatus``, all-symbol ``MassCancel``, with the same seq), so the
exchange-wide history is the merge of all of them by seq; each command is replayed on its
shard's engine (:class:`~tickline.shard.engine.ShardEngine`, so order ids come out as they
did live) and a broadcast's events are merged as the gateway merged them live.
:func:`tickline.journal.replay_events` delegates here for a directory with ``shards.json``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from tickline.journal import iter_commands, read_meta
from tickline.matching import Command, EngineConfig, Event, Instrument
from tickline.shard.engine import ShardEngine, engine_for_shard
from tickline.shard.mapping import MAP_FILE, shard_dir
from tickline.shard.merge import merge_events
from tickline.stream.reports import ExecReport, ReportBuilder

__all__ = ["is_sharded", "replay_merged", "replay_reports_merged", "shard_count"]


def is_sharded(directory: Path | str) -> bool:
    return (Path(directory) / MAP_FILE).is_file()


def shard_count(directory: Path | str) -> int:
    return int(json.loads((Path(directory) / MAP_FILE).read_text())["shards"])


def replay_merged(directory: Path | str, *, shards: int | None = None,
                  instruments: Sequence[Instrument] | None = None,
                  config: EngineConfig | None = None,
                  to_seqs: Sequence[int | None] | None = None,
                  engines: list[ShardEngine] | None = None,
                  ) -> Iterator[tuple[Command, list[Event]]]:
    """Yield every command of the sharded ``directory`` in seq order with its (merged)
    events. ``engines`` (one per shard, fresh) are the ones replayed on, for a caller that
    wants their books afterwards; instruments and config default to shard 0's meta."""
    directory = Path(directory)
    n = shards if shards is not None else shard_count(directory)
    if engines is None:
        if instruments is None or config is None:
            meta = read_meta(shard_dir(directory, 0))
            if meta is None:
                return
            instruments = instruments if instruments is not None else meta.instruments
            config = config if config is not None else meta.config
        engines = [engine_for_shard(list(instruments), config, k, n) for k in range(n)]
    limits = list(to_seqs) if to_seqs is not None else [None] * n

    def stream(k: int) -> Iterator[tuple[int, int, Command]]:
        d = shard_dir(directory, k)
        if not d.is_dir():
            return
        for cmd in iter_commands(d, to_seq=limits[k]):
            yield cmd.seq, k, cmd

    current: Command | None = None
    parts: list[list[Event]] = []
    for seq, k, cmd in heapq.merge(*(stream(k) for k in range(n))):
        if current is not None and seq != current.seq:
            yield current, merge_events(parts)
            parts = []
        current = cmd
        parts.append(engines[k].process(cmd))
    if current is not None:
        yield current, merge_events(parts)


def replay_reports_merged(directory: Path | str, account: int, after: int, upto: int,
                          to_command_seq: int) -> list[ExecReport]:
    """The reports of ``account`` numbered ``after+1 .. upto`` as of command
    ``to_command_seq``, rebuilt from every shard journal (session resume beyond memory:
    :func:`tickline.resume.replay_reports` delegates here). Replays from the beginning."""
    builder = ReportBuilder()
    out: list[ExecReport] = []
    for cmd, events in replay_merged(directory):
        if cmd.seq > to_command_seq:
            break
        out.extend(r for r in builder.build(cmd.seq, cmd.ts, events)
                   if r.account == account and after < r.seq <= upto)
    return out
