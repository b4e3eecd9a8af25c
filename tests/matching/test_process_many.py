"""``MatchingEngine.process_many`` (issue 13 item 3) is ``process`` applied to each command:
the same events per command, byte for byte, the same state after, however the stream is cut
into batches, over generated streams of every command kind (orders, stops, icebergs,
cancels, replaces, halts, time ticks, and the account commands with risk limits on)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.matching import test_properties, test_risk_properties
from tests.matching.commands import INSTRUMENTS, make_config, random_commands
from tests.matching.helpers import BOUNDED
from tickline.matching import (
    Command,
    EngineConfig,
    Event,
    Instrument,
    MatchingEngine,
    NewOrder,
    OrderType,
)


def _one_by_one(config: EngineConfig, instruments: list[Instrument],
                cmds: list[Command]) -> tuple[list[bytes], str, bytes]:
    engine = MatchingEngine(instruments, config)
    events = [msgspec.msgpack.encode(engine.process(c)) for c in cmds]
    return events, engine.digest(), msgspec.msgpack.encode(engine.snapshot())


def _batched(config: EngineConfig, instruments: list[Instrument], cmds: list[Command],
             cuts: list[int]) -> tuple[list[bytes], str, bytes]:
    engine = MatchingEngine(instruments, config)
    events: list[bytes] = []
    start = 0
    for end in [*sorted(cuts), len(cmds)]:
        batch = cmds[start:end]
        results = engine.process_many(batch)
        assert len(results) == len(batch)
        events.extend(msgspec.msgpack.encode(r) for r in results)
        start = max(start, end)
    engine.check()
    return events, engine.digest(), msgspec.msgpack.encode(engine.snapshot())


def _cuts(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, n), max_size=6)


@BOUNDED
@given(test_properties.SPECS, st.data())
def test_batches_equal_single_commands(specs: list[dict[str, Any]], data: Any) -> None:
    cmds = test_properties.build(specs)
    cuts = data.draw(_cuts(len(cmds)))
    assert (_batched(make_config(), INSTRUMENTS, cmds, cuts)
            == _one_by_one(make_config(), INSTRUMENTS, cmds))


@BOUNDED
@given(test_risk_properties.OPS, st.data())
def test_batches_equal_single_commands_with_risk_limits_and_account_commands(
        ops: list[dict[str, Any]], data: Any) -> None:
    cmds = test_risk_properties.build(ops)
    cuts = data.draw(_cuts(len(cmds)))
    config, instruments = test_risk_properties.CONFIG, test_risk_properties.INSTRUMENTS
    assert (_batched(config, instruments, cmds, cuts)
            == _one_by_one(config, instruments, cmds))


@pytest.mark.parametrize("seed", [11, 12])
def test_one_batch_of_a_long_random_stream(seed: int) -> None:
    cmds = random_commands(seed, 2_000)
    assert (_batched(make_config(), INSTRUMENTS, cmds, [])
            == _one_by_one(make_config(), INSTRUMENTS, cmds))


def test_empty_batch_and_expiry_inside_a_batch() -> None:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    assert engine.process_many([]) == []
    gtd = NewOrder(seq=1, ts=10, account=1, symbol="AAA", side=1, price=100, quantity=5,
                   tif=4, expire_time=20)
    stop = NewOrder(seq=2, ts=11, account=2, symbol="AAA", side=2, quantity=1,
                    order_type=int(OrderType.STOP), stop_price=90)
    later = NewOrder(seq=3, ts=25, account=3, symbol="AAA", side=2, price=101, quantity=1)
    results: list[list[Event]] = engine.process_many([gtd, stop, later])
    assert [type(e).__name__ for e in results[2]][:2] == ["Expired", "LevelChanged"]
    assert engine.order(1) is None and engine.order(2) is not None


def test_a_non_command_raises_after_the_commands_before_it() -> None:
    engine = MatchingEngine(INSTRUMENTS, make_config())
    first = NewOrder(seq=1, ts=10, account=1, symbol="AAA", side=1, price=100, quantity=5)
    with pytest.raises((AttributeError, TypeError)):
        engine.process_many([first, "not a command"])  # type: ignore[list-item]
    assert engine.order(1) is not None and engine.last_seq == 1
