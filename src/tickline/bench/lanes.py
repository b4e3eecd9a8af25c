"""``tickline bench lanes``: how long a cancel waits behind a flood of new orders.

The exchange's inbound ring is kept full of new orders (one slot short, so that with one
lane the cancel still fits behind them), and a market maker cancels one of its resting quotes
every ``cancel_every`` batches. Each round is one natural batch of the consumer
(``Exchange.processor.poll``), then a top-up of the ring, then (every ``cancel_every``
rounds) the cancel. Measured per command: the *queue wait*, from
``submit`` to the moment the sequencer took it (the command's engine timestamp, same
wall clock), for cancels and for a sample of the new orders, with the priority lane
(``lanes=True``: cancels in lane 0) and without (one lane, arrival order). Both runs use the
same commands in the same process, one after the other (no journal: the stages measured are
the ring and the sequencer; deadlines off, so that nothing is rejected as stale).

The flood trades with itself (accounts 1 and 2 alternately buy and sell one lot at one
price), so the book stays small and the batch cost constant; the market maker's quotes rest
far away. JSON keys other tools read: ``with_lanes`` and ``one_lane``, each with ``cancel``
and ``new_order`` percentiles in µs (``p50``, ``p99``, ...) and ``commands_per_second``.
"""

from __future__ import annotations

import time
from array import array
from pathlib import Path
from typing import Any

from rich.console import Console

from tickline.bench.report import histogram_of, latency_table, machine, percentiles, write_json
from tickline.exchange import Exchange
from tickline.matching import BUY, SELL, Cancel, Command, Event, Instrument, NewOrder
from tickline.stream.reports import ExecReport

__all__ = ["measure", "run"]

_MM = 7


def measure(*, lanes: bool, capacity: int = 8192, max_batch: int = 1024, cancels: int = 100,
            cancel_every: int = 4, sample_every: int = 16) -> dict[str, Any]:
    """One run: ``cancels * cancel_every`` batches with a full ring and a cancel every
    ``cancel_every`` batches. Returns the cancel and new-order queue-wait percentiles (µs)
    and the commands per second."""
    rounds = cancels * cancel_every
    # Deadlines off: a stale reject would take a command out of the measurement.
    ex = Exchange([Instrument(symbol="ABC")], capacity=capacity, max_batch=max_batch,
                  lanes=lanes, max_queue_ms=0, match_deadline_ms=0, publish_deadline_ms=0)
    quotes: list[int] = []
    for i in range(cancels):
        events = ex.process_now(NewOrder(account=_MM, symbol="ABC", side=SELL,
                                         price=10_000 + i, quantity=1))
        quotes.append(events[0].order_id)  # type: ignore[union-attr]
    cancel_waits = array("q")
    order_waits = array("q")
    now = time.time_ns

    def waited(into: array[int], sent: int) -> Any:
        def reply(cmd: Command, _e: list[Event], _r: list[ExecReport]) -> None:
            into.append(cmd.ts - sent)
        return reply

    submitted = 0

    def top_up() -> None:
        nonlocal submitted
        room = capacity - 1 - ex.processor.queued()
        for _ in range(room):
            side = BUY if submitted % 2 else SELL
            cmd = NewOrder(account=1 + submitted % 2, symbol="ABC", side=side, price=100,
                           quantity=1)
            if submitted % sample_every == 0:
                ex.submit(cmd, waited(order_waits, now()))
            else:
                ex.submit(cmd)
            submitted += 1

    top_up()
    processed = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        processed += ex.processor.poll()
        top_up()
        if r % cancel_every == 0:
            ex.submit(Cancel(account=_MM, symbol="ABC", order_id=quotes[r // cancel_every]),
                      waited(cancel_waits, now()))
    elapsed = time.perf_counter() - t0
    processed += ex.pump()
    assert len(cancel_waits) == cancels, "every cancel was sequenced"
    assert not ex.engine.orders or all(o.account != _MM for o in ex.engine.orders.values())
    return {"cancel": percentiles(histogram_of(cancel_waits), 1000.0),
            "new_order": percentiles(histogram_of(order_waits), 1000.0),
            "commands_per_second": processed / elapsed if elapsed else 0.0,
            "held_back": ex.held_back}


def run(*, capacity: int = 8192, max_batch: int = 1024, cancels: int = 100,
        cancel_every: int = 4, json_path: Path | None = None) -> dict[str, Any]:
    """Both runs (priority lane, then one lane), a table, and the JSON file."""
    console = Console()
    kw: dict[str, Any] = {"capacity": capacity, "max_batch": max_batch, "cancels": cancels,
                          "cancel_every": cancel_every}
    with_lanes = measure(lanes=True, **kw)
    one_lane = measure(lanes=False, **kw)
    console.print(latency_table(
        f"queue wait, inbound ring kept full ({capacity} slots, batches of {max_batch})",
        {"cancel, with lanes": with_lanes["cancel"],
         "new order, with lanes": with_lanes["new_order"],
         "cancel, one lane": one_lane["cancel"],
         "new order, one lane": one_lane["new_order"]}, "µs"))
    data: dict[str, Any] = {"benchmark": "lanes", **kw, "with_lanes": with_lanes,
                            "one_lane": one_lane, "machine": machine()}
    write_json(json_path, data)
    return data
