"""The account commands are ordinary journaled commands: through a real exchange with a real
journal on disk, a restart (recovery from a snapshot plus the journal tail, or from the
journal alone) rebuilds exactly the state, positions and kill switches included, and a replay
reproduces every event byte for byte."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tickline.exchange import Exchange
from tickline.journal.recovery import replay_events
from tickline.matching import (
    BUY,
    SELL,
    Accepted,
    AccountStatusChanged,
    CancelOrders,
    CancelReason,
    Command,
    EngineConfig,
    Event,
    Instrument,
    MassCancel,
    MassCancelled,
    NewOrder,
    Rejected,
    RejectReason,
    RiskLimits,
    SetAccountStatus,
)

INSTRUMENTS = [Instrument(symbol="ABC"), Instrument(symbol="XYZ")]
CONFIG = EngineConfig(account_limits={1: RiskLimits(max_position=20, max_open_orders=5),
                                      2: RiskLimits(max_order_quantity=10)})


def _commands() -> list[Command]:
    cmds: list[Command] = [
        NewOrder(account=1 + i % 3, symbol=("ABC", "XYZ")[i % 4 == 0],
                 side=BUY if i % 2 else SELL, price=100 + i % 5 - 2, quantity=1 + i % 6)
        for i in range(30)]
    cmds += [NewOrder(account=2, symbol="ABC", side=BUY, price=90, quantity=11),  # risk reject
             MassCancel(account=3, symbol="ABC"),
             CancelOrders(account=1, order_ids=(1, 5, 9),
                          reason=int(CancelReason.CANCEL_ON_DISCONNECT)),
             SetAccountStatus(account=2, enabled=False),
             NewOrder(account=2, symbol="ABC", side=BUY, price=90, quantity=1)]  # disabled
    return cmds


def _run(ex: Exchange, cmds: list[Command]) -> list[list[Event]]:
    return [ex.process_now(cmd) for cmd in cmds]


def test_restart_and_replay_reproduce_the_account_commands(tmp_path: Path) -> None:
    cmds = _commands()
    ex = Exchange(INSTRUMENTS, engine_config=CONFIG, journal_dir=tmp_path)
    live = _run(ex, cmds[:20])
    ex.snapshot()  # the snapshot holds positions; the tail holds the account commands
    live += _run(ex, cmds[20:])
    digest = ex.engine.digest()
    positions = ex.engine.positions()
    ex.close()

    flat = [e for events in live for e in events]
    assert any(type(e) is MassCancelled for e in flat)
    assert next(e for e in flat if type(e) is AccountStatusChanged).account == 2
    reasons = [e.reason for e in flat if type(e) is Rejected]
    assert int(RejectReason.RISK_MAX_QUANTITY) in reasons
    assert reasons[-1] == RejectReason.ACCOUNT_DISABLED
    assert positions  # trades happened

    again = Exchange(INSTRUMENTS, engine_config=CONFIG, journal_dir=tmp_path)
    assert again.recovery is not None and again.recovery.snapshot_seq == 20
    assert again.engine.digest() == digest
    assert again.engine.positions() == positions
    assert again.engine.disabled_accounts() == [2]
    # and the restarted engine goes on enforcing them
    (rej,) = again.process_now(NewOrder(account=2, symbol="ABC", side=BUY, price=90,
                                        quantity=1))
    assert isinstance(rej, Rejected) and rej.reason == RejectReason.ACCOUNT_DISABLED
    events = again.process_now(SetAccountStatus(account=2, enabled=True))
    assert events == [AccountStatusChanged(2, True, 0)]
    assert type(again.process_now(NewOrder(account=2, symbol="ABC", side=BUY, price=90,
                                           quantity=1))[0]) is Accepted
    again.close()

    # a replay from the first record (no snapshot) gives the live events, byte for byte
    replayed = [events for _cmd, events in replay_events(tmp_path)]
    assert msgspec.msgpack.encode(replayed[:len(live)]) == msgspec.msgpack.encode(live)
