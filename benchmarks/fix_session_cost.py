"""CPU time the order-entry gateways spend per order, FIX next to binary, without the network
or the exchange: each session gets a fake transport and the exchange's ``submit_many`` is a
stub, so what is measured is exactly the gateway's own work.

* inbound: one NewOrderSingle (FIX: framing, parse, dictionary validation, session checks,
  conversion; binary: framing, decode, checks) until the command is staged and submitted;
* outbound: one execution report (FIX: ExecutionReport body, encode, store record, store and
  socket write; binary: wire struct, frame, socket write).

Timed with ``time.process_time`` (CPU time of this process: insensitive to other load on the
machine), the minimum over repeats. Run: ``python benchmarks/fix_session_cost.py``.

Instruction counts (deterministic, for A/B on a busy machine): ``count PATH N`` runs one path
(``fix_in``, ``fix_out``, ``bin_in``, ``bin_out``, ``fix_encode``, ``bin_encode``) N times
without timing; under callgrind, instructions per call = (total with N=2200 - total with
N=200) / 2000::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python benchmarks/fix_session_cost.py count fix_in 2200 2>&1 | grep refs

``count`` freezes the wall clock (``time.time``, before tickline is imported; the compiled
modules look it up on the ``time`` module at each call): ``codec.sending_time`` caches its
text per millisecond, and under callgrind the program runs ~50x slower, so with a live clock
most calls missed that cache, how many depending on the machine's load (the same tree gave
fix_out 50.1k and 51.6k in two runs). Frozen, every call after the first hits, as it nearly
always does at high message rates.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import timeit
from typing import Any

from tickline.config import default_config
from tickline.exchange import Exchange
from tickline.gateway import protocol as p
from tickline.gateway.binary import BinaryGateway
from tickline.gateway.binary_session import BinarySession
from tickline.gateway.fix import codec
from tickline.gateway.fix.gateway import FixGateway
from tickline.gateway.fix.session import FixSession
from tickline.stream.reports import ExecReport

N = 2000
REPEAT = 7


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, key: str) -> Any:
        return ("127.0.0.1", 1) if key == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def cost(fn: Any) -> float:
    """Microseconds of CPU time per call (minimum over repeats)."""
    return min(timeit.repeat(fn, number=N, repeat=REPEAT, timer=time.process_time)) / N * 1e6


REPORT = ExecReport(seq=5, ts=1, account=11, kind=1, symbol="AAPL", order_id=77,
                    client_order_id="L123", side=1, price=9950, quantity=1, leaves=1)


def setup() -> dict[str, Any]:
    """The two gateways with fake transports and a stubbed exchange; the measured paths."""
    cfg = default_config()
    cfg.fix.store_dir = tempfile.mkdtemp()
    ex = Exchange(cfg.instruments, engine_config=cfg.engine_config())
    ex.submit_many = lambda cmds, reply, port: len(cmds)  # type: ignore[method-assign]

    fix_gw = FixGateway(ex, cfg)
    fix_gw.accepting = True
    fs = FixSession(fix_gw)
    fs.connection_made(_Transport())  # type: ignore[arg-type]
    enc = codec.Encoder("MM1", "TICKLINE")
    fs.data_received(enc.encode("A", 1, b"98=0\x01108=30\x01141=Y\x01554=mm1-key-0\x01"))
    assert fs.logged_on
    seq = [2]

    def fix_in() -> None:
        n = seq[0]
        seq[0] = n + 1
        fs.data_received(enc.encode("D", n, b"11=L%d\x0155=AAPL\x0154=1\x0160=%s\x0138=1\x01"
                                    b"40=2\x0144=99.50\x0159=1\x01" % (n, codec.sending_time())))
        fs.pending.clear()
        fs.flush()

    def fix_out() -> None:
        fs._report(REPORT)
        fs.flush()

    bin_gw = BinaryGateway(ex, cfg)
    bin_gw.accepting = True
    bs = BinarySession(bin_gw)
    bs.connection_made(_Transport())  # type: ignore[arg-type]
    bs.data_received(p.encode_frame(p.Logon("mm1-key-0")))
    assert bs.account is not None
    rid = [1]

    def bin_in() -> None:
        n = rid[0]
        rid[0] = n + 1
        bs.data_received(p.encode_frame(p.NewOrderRequest(
            request_id=n, symbol="AAPL", side=1, quantity=1, price=9950,
            client_order_id=f"L{n}")))
        bs.pending.clear()
        bs.flush()

    def bin_out() -> None:
        bs._unsolicited([REPORT])
        bs.flush()

    # the encoding of the inbound message is the client's work: measured to subtract it
    def fix_encode() -> None:
        enc.encode("D", 5, b"11=L5\x0155=AAPL\x0154=1\x0160=%s\x0138=1\x0140=2\x0144=99.50\x01"
                   b"59=1\x01" % codec.sending_time())

    def bin_encode() -> None:
        p.encode_frame(p.NewOrderRequest(request_id=5, symbol="AAPL", side=1, quantity=1,
                                         price=9950, client_order_id="L5"))

    return {"fix_in": fix_in, "bin_in": bin_in, "fix_out": fix_out, "bin_out": bin_out,
            "fix_encode": fix_encode, "bin_encode": bin_encode, "fix_gw": fix_gw,
            "bin_gw": bin_gw}


async def main() -> None:
    paths = setup()
    rows: dict[str, float] = {}
    for _ in range(2):  # interleaved, twice
        for name in ("fix_in", "bin_in", "fix_out", "bin_out", "fix_encode", "bin_encode"):
            rows[name] = min(rows.get(name, 1e9), cost(paths[name]))
    assert paths["bin_gw"].requests >= N and paths["fix_gw"].orders >= N
    fin = rows["fix_in"] - rows["fix_encode"]
    bin_ = rows["bin_in"] - rows["bin_encode"]
    print(f"inbound order:   FIX {fin:5.1f} us   binary {bin_:5.1f} us   ratio {fin / bin_:.2f}")
    print(f"outbound report: FIX {rows['fix_out']:5.1f} us   binary {rows['bin_out']:5.1f} us   "
          f"ratio {rows['fix_out'] / rows['bin_out']:.2f}")


async def count(name: str, n: int) -> None:
    fn = setup()[name]
    for _ in range(n):
        fn()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "count":
        _frozen = time.time()
        time.time = lambda: _frozen  # see the module docstring
        asyncio.run(count(sys.argv[2], int(sys.argv[3])))
    else:
        asyncio.run(main())
