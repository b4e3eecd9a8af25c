"""Random command streams for the property and differential tests: few accounts (so
self-trade prevention fires), narrow price ranges (so trading is frequent), a small pool of
client order ids (so duplicates and eviction happen), and a sprinkling of invalid input."""

from __future__ import annotations

import random
from typing import Any

from tickline.matching import (
    BUY,
    SELL,
    Cancel,
    Command,
    EngineConfig,
    Instrument,
    MatchingEngine,
    NewOrder,
    Replace,
    SetTradingStatus,
    STPMode,
    TimeTick,
)

INSTRUMENTS = [
    Instrument(symbol="AAA", max_price=1_000),
    Instrument(symbol="BBB", tick_size=5, lot_size=10, min_price=50, max_price=150,
               max_quantity=200, protection_ticks=3),
    Instrument(symbol="CCC", protection_ticks=1),
]
MIDS = {"AAA": 100, "BBB": 100, "CCC": 20}
ACCOUNTS = (1, 2, 3, 4)
CONFIG = EngineConfig(
    account_stp={3: int(STPMode.CANCEL_OLDEST), 4: int(STPMode.CANCEL_BOTH)},
    client_id_memory=6,
    max_stop_triggers=2,  # small, so that the bound is reached in random streams
)
CLIDS = [f"c{i}" for i in range(10)]


def make_config() -> EngineConfig:
    return EngineConfig(account_stp=dict(CONFIG.account_stp),
                        client_id_memory=CONFIG.client_id_memory,
                        max_stop_triggers=CONFIG.max_stop_triggers)


def random_commands(seed: int, n: int) -> list[Command]:
    """``n`` commands with strictly increasing seq and non-decreasing ts. A private driver
    engine is run alongside only to aim most cancels and replaces at live orders."""
    rng = random.Random(seed)
    driver = MatchingEngine(INSTRUMENTS, make_config())
    cmds: list[Command] = []
    ts = 1_000
    for seq in range(1, n + 1):
        ts += rng.choice((0, 1, 1, 2, 5))
        symbol = rng.choice(("AAA", "AAA", "BBB", "CCC"))
        account = rng.choice(ACCOUNTS)
        clid = rng.choice(CLIDS) if rng.random() < 0.4 else ""
        r = rng.random()
        cmd: Command
        if r < 0.55:
            cmd = _new_order(rng, seq, ts, account, symbol, clid)
        elif r < 0.93:
            order_id = rng.randint(1, driver.next_order_id)
            orig = ""
            live = list(driver.orders.values())
            if live and rng.random() < 0.92:
                target = rng.choice(live)
                order_id, symbol = target.order_id, target.symbol
                if rng.random() < 0.9:
                    account = target.account
                if target.client_order_id and rng.random() < 0.3:
                    order_id, orig = 0, target.client_order_id
            elif rng.random() < 0.2:
                order_id, orig = 0, rng.choice(CLIDS)
            if r < 0.70:
                cmd = Cancel(seq=seq, ts=ts, account=account, symbol=symbol, order_id=order_id,
                             orig_client_order_id=orig)
            else:
                inst = _INST[symbol]
                price = 0
                quantity = 0
                what = rng.random()
                if what < 0.6:
                    price = MIDS[symbol] + rng.randint(-4, 4) * inst.tick_size
                if what > 0.4:
                    quantity = rng.randint(1, 9) * inst.lot_size
                if rng.random() < 0.03:
                    price = price + 1 if price else -5
                stop_price = display = 0
                if rng.random() < 0.15:
                    stop_price = MIDS[symbol] + rng.randint(-4, 4) * inst.tick_size
                    if rng.random() < 0.1:
                        stop_price += 1  # off tick on BBB
                if rng.random() < 0.1:
                    display = rng.randint(1, 4) * inst.lot_size
                if rng.random() < 0.02:
                    display = rng.choice((-inst.lot_size, inst.lot_size + 1, 100 * inst.lot_size))
                cmd = Replace(seq=seq, ts=ts, account=account, symbol=symbol,
                              order_id=order_id, orig_client_order_id=orig, price=price,
                              quantity=quantity, client_order_id=clid, stop_price=stop_price,
                              display_quantity=display)
        elif r < 0.95:
            cmd = SetTradingStatus(seq=seq, ts=ts, symbol=symbol, halted=rng.random() < 0.2)
        else:
            ts += rng.randint(0, 20)
            cmd = TimeTick(seq=seq, ts=ts)
        driver.process(cmd)
        cmds.append(cmd)
    return cmds


_INST = {i.symbol: i for i in INSTRUMENTS}


def _new_order(rng: random.Random, seq: int, ts: int, account: int, symbol: str,
               clid: str) -> NewOrder:
    inst = _INST[symbol]
    tick, lot = inst.tick_size, inst.lot_size
    kw: dict[str, Any] = {}
    tif = rng.choices((1, 2, 3, 4), (50, 15, 15, 20))[0]
    if tif == 4:
        kw["expire_time"] = ts + rng.randint(-1, 40)
    if rng.random() < 0.1:
        kw["post_only"] = True
    if rng.random() < 0.25:
        kw["stp"] = rng.randint(0, 4)
    price = MIDS[symbol] + rng.randint(-4, 4) * tick
    quantity = rng.randint(1, 8) * lot
    order_type = rng.choices((1, 2, 3, 4), (75, 10, 7, 8))[0]
    fields: dict[str, Any] = {"side": rng.choice((BUY, SELL)), "order_type": order_type,
                              "tif": tif}
    if order_type >= 3:  # mostly on the far side of the mid, so that stops pile up
        away = rng.randint(-4, 4) if rng.random() < 0.2 else rng.randint(1, 4)
        kw["stop_price"] = MIDS[symbol] + (away if fields["side"] == BUY else -away) * tick
        kw["post_only"] = rng.random() < 0.03
    elif rng.random() < 0.15:
        kw["display_quantity"] = rng.randint(1, 3) * lot
    if rng.random() < 0.04:  # invalid input of some kind
        field: str
        value: Any
        field, value = rng.choice([
            ("quantity", 0), ("quantity", lot * 3 + (1 if lot > 1 else -10)),
            ("quantity", 10_000), ("price", 0), ("price", price + 1), ("price", 10_000),
            ("side", 3), ("order_type", 7), ("tif", 9), ("stp", 8), ("symbol", "NOPE"),
            ("stop_price", 0), ("stop_price", price + 1), ("stop_price", price),
            ("display_quantity", -lot), ("display_quantity", lot + 1),
            ("display_quantity", quantity + lot)])
        if field == "quantity":
            quantity = value
        elif field == "price":
            price = value
        elif field == "symbol":
            symbol = value
        elif field in ("stp", "stop_price", "display_quantity"):
            kw[field] = value
        else:
            fields[field] = value
    return NewOrder(seq=seq, ts=ts, account=account, symbol=symbol, quantity=quantity,
                    price=price, client_order_id=clid, **fields, **kw)
