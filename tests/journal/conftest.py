"""Shared helpers for the journal tests: small deterministic workloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tickline.bench.workload import exchange_core_mix
from tickline.journal import Journal
from tickline.matching import Command, EngineConfig, Instrument, MatchingEngine

SMALL = 64 << 10
"""Segment size for tests: the default 64 MiB is pre-allocated on disk, per journal."""


class Mix:
    """A small exchange-core mix: instruments and sequenced commands (prefill included)."""

    def __init__(self, commands: int, seed: int) -> None:
        work = exchange_core_mix(commands, seed=seed)
        self.instruments: list[Instrument] = work.instruments
        self.commands: list[Command] = [*work.prefill, *work.commands]

    def engine(self) -> MatchingEngine:
        return MatchingEngine(self.instruments, EngineConfig())

    def digest_after(self, n: int) -> str:
        """The engine digest after the first ``n`` commands."""
        engine = self.engine()
        for cmd in self.commands[:n]:
            engine.process(cmd)
        return engine.digest()


@pytest.fixture(scope="session")
def mix() -> Mix:
    return Mix(6_000, seed=7)


def write_journal(directory: Path, mix: Mix, *, n: int | None = None, batch: int = 100,
                  segment_bytes: int = 64 << 10, durability: str = "none",
                  snapshot_at: tuple[int, ...] = ()) -> Journal:
    """Journal the first ``n`` commands of ``mix`` (closed afterwards); snapshot after each
    count in ``snapshot_at``."""
    cmds = mix.commands[:n] if n is not None else mix.commands
    engine = mix.engine()
    j = Journal.open(directory, durability=durability, segment_bytes=segment_bytes,
                     instruments=mix.instruments, config=EngineConfig())
    for i in range(0, len(cmds), batch):
        chunk = cmds[i:i + batch]
        j.append_many(chunk)
        j.commit()
        for cmd in chunk:
            engine.process(cmd)
        if any(i < s <= i + batch for s in snapshot_at):
            j.write_snapshot(engine.snapshot())
    j.close()
    return j


@pytest.fixture
def journal_of(tmp_path: Path, mix: Mix) -> Callable[..., Path]:
    """Factory: ``journal_of(name, **write_journal_kwargs)`` -> a written journal dir."""

    def make(name: str = "j", **kwargs: object) -> Path:
        d = tmp_path / name
        write_journal(d, mix, **kwargs)  # type: ignore[arg-type]
        return d

    return make
