"""Differential test: the engine against the deliberately simple reference matcher in
:mod:`tests.matching.reference`, over many thousands of random commands.

After every command: the event streams are equal (``LevelChanged`` aside, and reject texts
aside: the reference does not word them); the engine's level changes, replayed as a depth
feed, give exactly the reference's depth; the resting orders agree in priority order; the
engine's invariant checker passes."""

from __future__ import annotations

import os

import msgspec
import pytest

from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tests.matching.reference import ReferenceMatcher
from tickline.matching import (
    Cancelled,
    Event,
    LevelChanged,
    MatchingEngine,
    Rejected,
    Replaced,
    Triggered,
)

N_COMMANDS = int(os.environ.get("TICKLINE_DIFF_COMMANDS", "6000"))
SEEDS = range(int(os.environ.get("TICKLINE_DIFF_SEEDS", "6")))


def comparable(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for e in events:
        if type(e) is LevelChanged:
            continue
        if type(e) is Rejected:
            assert e.text, f"reject without text: {e}"
            e = msgspec.structs.replace(e, text="")
        out.append(e)
    return out


BookRow = tuple[int, int, str, int, int, int, int, int, int]


def engine_book(engine: MatchingEngine, symbol: str) -> list[BookRow]:
    """Resting orders with their whole open quantity, then the visible part."""
    return [(o.order_id, o.account, o.client_order_id, o.side, o.price, o.quantity,
             o.leaves + o.hidden, o.filled, o.leaves) for o in engine.book(symbol).orders()]


def engine_armed(engine: MatchingEngine, symbol: str) -> list[tuple[int, int, int, int, int]]:
    stops = engine.stops.get(symbol)
    return [(o.order_id, o.side, o.stop_price, o.price, o.quantity)
            for o in (stops.orders() if stops is not None else [])]


def run_differential(seed: int, n: int) -> dict[str, int]:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    ref = ReferenceMatcher(INSTRUMENTS, make_config())
    depth: dict[tuple[str, int, int], tuple[int, int]] = {}
    stats: dict[str, int] = {}
    for i, cmd in enumerate(random_commands(seed, n)):
        got = engine.process(cmd)
        want = ref.process(cmd)
        context = f"seed {seed}, command #{i}: {cmd}"
        assert comparable(got) == want, context
        for e in got:
            name = type(e).__name__
            stats[name] = stats.get(name, 0) + 1
            if type(e) is Rejected:
                stats[f"reject {e.reason}"] = stats.get(f"reject {e.reason}", 0) + 1
            elif type(e) is LevelChanged:
                key = (e.symbol, e.side, e.price)
                if e.quantity == 0 and e.order_count == 0:
                    depth.pop(key, None)
                else:
                    assert e.quantity > 0 and e.order_count > 0, (context, e)
                    depth[key] = (e.quantity, e.order_count)
        assert depth == ref.depth(), context
        for inst in INSTRUMENTS:
            assert engine_book(engine, inst.symbol) == ref.book(inst.symbol), context
            assert engine_armed(engine, inst.symbol) == ref.armed(inst.symbol), context
            assert engine.last_prices.get(inst.symbol, 0) == ref.last.get(inst.symbol, 0)
        engine.check()
    assert engine.next_order_id == ref.next_order_id
    assert engine.next_trade_id == ref.next_trade_id
    return stats


@pytest.mark.parametrize("seed", SEEDS)
def test_engine_matches_the_reference(seed: int) -> None:
    stats = run_differential(seed, N_COMMANDS)
    # the stream must actually exercise the contract, or the comparison proves little
    for name in ("Trade", "Cancelled", "Replaced", "Expired", "Rejected", "StatusChanged",
                 "Triggered"):
        assert stats.get(name, 0) > 0, (name, stats)
    assert stats["Trade"] > N_COMMANDS // 20, stats


def test_the_random_streams_hit_every_interesting_path() -> None:
    """Coverage of the generator (seeds 99 and 3): every cancel reason, the stop cascade
    bound included, the rejects that need state (duplicates, owner, post-only, replace too
    low) and the stop and iceberg rejects actually occur, and cascades of several triggers
    in one command happen."""
    from tests.matching.commands import random_commands as gen

    cancel_reasons: set[int] = set()
    reject_reasons: set[int] = set()
    kept = set()
    most_triggers = 0
    for seed in (99, 3):
        engine = MatchingEngine(INSTRUMENTS, make_config())
        for cmd in gen(seed, N_COMMANDS):
            events = engine.process(cmd)
            most_triggers = max(most_triggers, sum(type(e) is Triggered for e in events))
            for e in events:
                if type(e) is Cancelled:
                    cancel_reasons.add(e.reason)
                elif type(e) is Rejected:
                    reject_reasons.add(e.reason)
                elif type(e) is Replaced:
                    kept.add(e.kept_priority)
    assert cancel_reasons == {1, 2, 3, 4, 5, 6, 20}, cancel_reasons
    assert {101, 102, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 213, 214, 301,
            303, 230, 231, 233, 234, 240, 241, 242, 243} <= reject_reasons, sorted(reject_reasons)
    assert kept == {True, False}
    assert most_triggers == make_config().max_stop_triggers
