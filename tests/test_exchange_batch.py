"""The exchange loop matches each batch with one ``MatchingEngine.process_many`` call:
replies carry exactly the events of per-command processing; a deferred command in the
middle of a batch is made from the state after everything sequenced before it; an engine
failure stops the loop and nothing of its batch is journaled or acknowledged."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tickline.bench.workload import exchange_core_mix
from tickline.exchange import Exchange, ExchangeStopped
from tickline.journal import iter_commands
from tickline.matching import (
    BUY,
    Cancel,
    Cancelled,
    Command,
    Event,
    Instrument,
    MatchingEngine,
    NewOrder,
)

ABC = Instrument(symbol="ABC")
SEGMENT = 1 << 20


def test_batched_replies_equal_per_command_processing(tmp_path: Path) -> None:
    workload = exchange_core_mix(3_000, seed=9)
    ex = Exchange(workload.instruments, segment_bytes=SEGMENT, journal_dir=tmp_path,
                  max_batch=256)
    got: list[tuple[Command, list[Event]]] = []
    for cmd in workload.prefill + workload.commands:
        ex.submit(msgspec.structs.replace(cmd), lambda c, events, _r: got.append((c, events)))
    ex.pump()
    assert ex.processor.batch_size.snapshot().max > 1  # really batched
    ex.close()
    reference = MatchingEngine(workload.instruments)
    encode = msgspec.msgpack.encode
    assert [encode(events) for _c, events in got] == [
        encode(reference.process(c)) for c, _events in got]


def test_a_deferred_command_sees_the_commands_before_it_in_its_batch(tmp_path: Path) -> None:
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
    replies: list[list[Event]] = []

    def cancel_first_live() -> Command | None:
        live = sorted(ex.engine.orders)  # matched already, though the batch is not over
        return Cancel(account=1, symbol="ABC", order_id=live[0]) if live else None

    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=5),
              lambda _c, events, _r: replies.append(events))
    ex.submit_deferred(cancel_first_live, lambda _c, events, _r: replies.append(events))
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=99, quantity=5),
              lambda _c, events, _r: replies.append(events))
    assert ex.pump() == 3  # one batch
    assert len(replies) == 3
    assert type(replies[1][0]) is Cancelled
    assert sorted(ex.engine.orders) == [2]
    ex.close()


class _Exploding(MatchingEngine):
    __slots__ = ()

    def process_many(self, commands: object) -> list[list[Event]]:
        raise RuntimeError("engine bug")


def test_an_engine_failure_stops_the_loop_and_releases_nothing(tmp_path: Path) -> None:
    ex = Exchange([ABC], segment_bytes=SEGMENT, journal_dir=tmp_path)
    ex.engine.__class__ = _Exploding
    replies: list[object] = []
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=5),
              lambda *a: replies.append(a))
    with pytest.raises(RuntimeError, match="engine bug"):
        ex.pump()
    assert replies == [] and isinstance(ex.failure, RuntimeError)
    with pytest.raises(ExchangeStopped):
        ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=5))
    ex.engine.__class__ = MatchingEngine
    ex.close()
    assert list(iter_commands(tmp_path)) == []  # nothing journaled
