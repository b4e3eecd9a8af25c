"""Differential test of the account commands: the random streams of test_differential.py
with mass cancels, cancel lists and kill switches mixed in, engine against the reference
matcher (tests/matching/reference.py), event for event, with the engine's invariant checker
after every command."""

from __future__ import annotations

import os
import random

import msgspec
import pytest

from tests.matching.commands import ACCOUNTS, INSTRUMENTS, make_config, random_commands
from tests.matching.reference import ReferenceMatcher
from tests.matching.test_differential import comparable
from tickline.matching import (
    CancelOrders,
    CancelReason,
    Command,
    MassCancel,
    MassCancelled,
    MatchingEngine,
    SetAccountStatus,
)

N_COMMANDS = int(os.environ.get("TICKLINE_DIFF_COMMANDS", "6000")) // 2
SEEDS = range(int(os.environ.get("TICKLINE_DIFF_SEEDS", "6")) // 2)


def with_account_commands(seed: int, n: int) -> list[Command]:
    """``random_commands`` with about one account command per 15, renumbered."""
    rng = random.Random(seed + 1000)
    out: list[Command] = []
    for cmd in random_commands(seed, n):
        if rng.random() < 1 / 15:
            account = rng.choice(ACCOUNTS)
            r = rng.random()
            extra: Command
            if r < 0.4:
                extra = MassCancel(account=account, symbol=rng.choice(["", "", "AAA", "BBB",
                                                                      "NOPE"]),
                                   side=rng.choice([0, 0, 1, 2, 3]))
            elif r < 0.7:
                extra = CancelOrders(account=account,
                                     order_ids=tuple(rng.randint(1, 400) for _ in range(6)),
                                     reason=rng.choice([int(CancelReason.CANCEL_ON_DISCONNECT),
                                                        int(CancelReason.USER), 2]))
            else:
                extra = SetAccountStatus(account=account, enabled=rng.random() < 0.6)
            out.append(msgspec.structs.replace(extra, ts=cmd.ts))
        out.append(cmd)
    return [msgspec.structs.replace(c, seq=i) for i, c in enumerate(out, 1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_reference_with_account_commands(seed: int) -> None:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    ref = ReferenceMatcher(INSTRUMENTS, make_config())
    summaries = 0
    for i, cmd in enumerate(with_account_commands(seed, N_COMMANDS)):
        got = engine.process(cmd)
        assert comparable(got) == ref.process(cmd), f"seed {seed}, command #{i}: {cmd}"
        engine.check()
        summaries += sum(1 for e in got if type(e) is MassCancelled and e.count)
    assert summaries > 10  # the mix really cancels something
