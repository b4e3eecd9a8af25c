"""Child process of test_crash.py: recover, then append batches (durability ``batch``) as
fast as it can, acknowledging each committed batch's last seq on stdout, snapshotting now
and then, until it is killed."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from tickline.journal import Journal, recover
from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    EngineConfig,
    Instrument,
    MatchingEngine,
    NewOrder,
    TimeInForce,
)

INSTRUMENTS = [Instrument(symbol="K")]


def main() -> None:
    directory = Path(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    if directory.exists():
        engine, _report = recover(directory, INSTRUMENTS)
    else:
        engine = MatchingEngine(INSTRUMENTS, EngineConfig())
    j = Journal.open(directory, durability="batch", segment_bytes=32 << 10,
                     instruments=INSTRUMENTS, config=EngineConfig())
    assert j.last_seq == engine.last_seq, (j.last_seq, engine.last_seq)
    seq = j.last_seq
    out = sys.stdout
    out.write(f"ready {seq}\n")
    out.flush()
    while True:
        batch: list[Command] = []
        for _ in range(rng.randint(1, 150)):
            seq += 1
            if rng.random() < 0.2 and engine.next_order_id > 1:
                batch.append(Cancel(seq=seq, ts=seq, account=rng.randint(1, 4), symbol="K",
                                    order_id=rng.randrange(1, engine.next_order_id)))
            else:
                batch.append(NewOrder(
                    seq=seq, ts=seq, account=rng.randint(1, 4), symbol="K",
                    side=rng.choice((BUY, SELL)), price=rng.randint(95, 105),
                    quantity=rng.randint(1, 10),
                    tif=int(TimeInForce.IOC) if rng.random() < 0.1 else int(TimeInForce.GTC)))
        j.append_many(batch)
        j.commit()  # durable: now acknowledge
        out.write(f"{seq}\n")
        out.flush()
        for cmd in batch:
            engine.process(cmd)
        if rng.random() < 0.08:
            j.write_snapshot(engine.snapshot())


if __name__ == "__main__":
    main()
