"""Run in a child process by tests/build/test_build.py: a fixed stream (the mix with stops
and icebergs) through the whole exchange loop (``Exchange.submit_many`` + ``pump``, a real
journal, deterministic clocks); print the build and a hash of everything the loop hands
out: every market-data message per topic, every reply (command, events, own reports),
every unsolicited delivery to session ports and a drop copy, msgpack-encoded, and the
journal's bytes. The release path is compiled in the compiled build (publisher, report
builder, router, history, ``tickline.loop``): both builds must hand out the same bytes."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from tickline._build import describe
from tickline.bench.exchange import ticking_clock
from tickline.bench.workload import exchange_core_mix
from tickline.exchange import Exchange
from tickline.stream.routing import ReportPort


def main(commands: int = 4_000) -> None:
    work = exchange_core_mix(commands, seed=5, stops=0.05, icebergs=0.05)
    encode = msgspec.msgpack.Encoder().encode
    market = hashlib.sha256()
    replies = hashlib.sha256()
    unsolicited = hashlib.sha256()
    counts = {"messages": 0, "replies": 0, "reports": 0, "unsolicited": 0}
    with tempfile.TemporaryDirectory(prefix="loop-child-") as tmp:
        exchange = Exchange(work.instruments, journal_dir=Path(tmp), durability="none",
                            max_batch=64, clock=ticking_clock(1_700_000_000 * 10**9, 1_000),
                            monotonic=ticking_clock(0, 1_000))

        def on_messages(topic: str, msgs: Any) -> None:
            counts["messages"] += len(msgs)
            market.update(topic.encode())
            for m in msgs:
                market.update(encode(m))

        def reply(cmd: Any, events: list[Any], reports: list[Any]) -> None:
            counts["replies"] += 1
            counts["reports"] += len(reports)
            replies.update(encode(cmd))
            for x in (*events, *reports):
                replies.update(encode(x))

        def deliver_to(name: str) -> Any:
            def deliver(reports: list[Any]) -> None:
                counts["unsolicited"] += len(reports)
                unsolicited.update(name.encode())
                for r in reports:
                    unsolicited.update(encode(r))
            return deliver

        for inst in work.instruments:
            exchange.bus.subscribe(f"*.{inst.symbol}", batch_callback=on_messages,
                                   capacity=1 << 20)
        exchange.router.attach(None, deliver_to("drop copy"))
        ports: dict[int, ReportPort] = {}
        for account in range(0, 1_000, 7):  # sessions for some accounts: unsolicited fills
            ports[account] = exchange.router.attach(account, deliver_to(f"port {account}"))
        try:
            for cmd in work.prefill:
                exchange.submit(cmd, reply)
            exchange.pump()
            cmds = work.commands
            for start in range(0, len(cmds), 64):
                chunk = cmds[start:start + 64]
                # a session's own commands with its port (origin), the others without
                own = [c for c in chunk if c.account in ports and c.account % 2 == 0]
                rest = [c for c in chunk if not (c.account in ports and c.account % 2 == 0)]
                exchange.submit_many(rest, reply)
                for c in own:
                    exchange.submit_many([c], reply, ports[c.account])
                exchange.pump()
                exchange.bus.pump()
        finally:
            exchange.close()
        journal = hashlib.sha256()
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                journal.update(path.name.encode())
                journal.update(path.read_bytes())
    print(json.dumps({"build": describe(), "market": market.hexdigest(),
                      "replies": replies.hexdigest(), "unsolicited": unsolicited.hexdigest(),
                      "journal": journal.hexdigest(), "counts": counts}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4_000)
