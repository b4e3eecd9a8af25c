"""``tickline bench matching --peers``: tickline's pure and compiled builds and liquibook on
the same commands, in one run.

The workload is generated once and written to a temporary file; every measurement then
runs in a fresh child process (``python -c`` calling :func:`worker`), because the pure and
the compiled build of the same modules cannot both be imported in one interpreter (the
pure one with ``TICKLINE_PURE=1``). Variants take turns, round after round (interleaved,
so load from elsewhere on the machine hits all alike); each variant's result is the median
of its rounds.

liquibook (PyPI ``liquibook``, C++ through SWIG; the optional ``peers`` extra) gets the same
commands, translated once before timing: a new order is a ``SimpleOrder`` added to the
book (IOC as ``oc_immediate_or_cancel``), a cancel and a move (``replace`` with a size delta
of 0 and the new price) address the order tickline gave that id to. *With listener*: a
Python ``OrderListener`` receives every callback and keeps each fill as a tuple, so the
fills reach Python as tickline's events do; *without*: no listener, the C++ book alone.

**Noise.** On a shared VM, three rounds of 200,000 commands gave compiled/liquibook ratios
from 0.74 to 1.57 back to back. So each round times every variant by wall clock *and* by
CPU time (``time.process_time_ns``: time stolen by the hypervisor or taken by other
processes is not charged to the child), the variants' order rotates from round to round,
and the report gives, per variant, the median and the spread (min, p25, p75, max) of the
rounds, and per ratio both the ratio of medians and the median of the *paired* ratios (the
two variants of one round ran back to back, under about the same load). Many short rounds
(``--peer-rounds 9`` or more of ~50,000 commands) beat a few long ones. The deterministic
figure is ``benchmarks/peers_callgrind.py``: instructions per command of each variant on the
same commands.
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tickline.bench.workload import Workload
from tickline.matching import BUY, Accepted, Cancel, NewOrder, Replace, TimeInForce

IOC = int(TimeInForce.IOC)

VARIANTS = ("pure", "compiled", "liquibook_listener", "liquibook")
"""Measured variants; their JSON keys are ``<variant>_commands_per_second``."""


def liquibook_available() -> bool:
    """Whether the optional liquibook package can be imported."""
    try:
        import liquibook  # noqa: F401
    except ImportError:
        return False
    return True


def _liquibook_ops(workload: Workload) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Prefill and timed commands as liquibook operations: ``("n", is_buy, price, qty, ioc,
    id)``, ``("c", id)``, ``("r", id, price)``, with the order ids tickline assigns
    (found by running tickline's engine over the stream once, untimed)."""
    engine = workload.engine()
    out: list[list[tuple[Any, ...]]] = [[], []]
    for part, commands in enumerate((workload.prefill, workload.commands)):
        for cmd in commands:
            events = engine.process(cmd)
            if type(cmd) is NewOrder:
                first = events[0] if events else None
                oid = first.order_id if type(first) is Accepted else 0
                out[part].append(("n", cmd.side == BUY, cmd.price, cmd.quantity,
                                  cmd.tif == IOC, oid))
            elif type(cmd) is Cancel:
                out[part].append(("c", cmd.order_id))
            elif type(cmd) is Replace:
                out[part].append(("r", cmd.order_id, cmd.price))
    return out[0], out[1]


def liquibook_book(listener: bool) -> tuple[Any, Any, list[tuple[int, int, int, int]]]:
    """``(book, listener)`` (keep them referenced while ``apply`` is used: the C++ book
    holds the listener by pointer), ``apply(ops)`` running liquibook operations on the book,
    and the fills list the Python listener (with ``listener``) appends to."""
    import liquibook as lb

    fills: list[tuple[int, int, int, int]] = []

    class Listener(lb.OrderListener):  # type: ignore[misc]
        """Every callback reaches Python; fills are kept as tuples."""

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: Any) -> None:
            pass

        def on_fill(self, order: Any, matched: Any, qty: int, cost: int) -> None:
            fills.append((order.order_id_, matched.order_id_, qty, cost))

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: Any) -> None:
            pass

        def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: Any) -> None:
            pass

    book = lb.liquibook_book_OrderBook()
    keep = Listener() if listener else None
    if keep is not None:
        book.set_order_listener(keep)
    orders: dict[int, Any] = {}
    simple = lb.SimpleOrder
    add, cancel, replace = book.add, book.cancel, book.replace
    ioc_flag = lb.oc_immediate_or_cancel

    def apply(chunk: list[tuple[Any, ...]]) -> None:
        for op in chunk:
            kind = op[0]
            if kind == "r":
                order = orders.get(op[1])
                if order is not None:
                    replace(order, 0, op[2])
            elif kind == "n":
                if op[4]:
                    add(simple(op[1], op[2], op[3], 0, ioc_flag), ioc_flag)
                else:
                    order = simple(op[1], op[2], op[3])
                    orders[op[5]] = order
                    add(order)
            else:
                order = orders.pop(op[1], None)
                if order is not None:
                    cancel(order)

    return (book, keep), apply, fills


def _time_liquibook(prefill: list[tuple[Any, ...]], ops: list[tuple[Any, ...]],
                    listener: bool) -> tuple[float, float, int]:
    """Commands per wall and per CPU second of liquibook over ``ops``; fills seen by the
    listener."""
    from tickline.bench.matching import timed_chunks

    _alive, apply, fills = liquibook_book(listener)
    apply(prefill)
    fills.clear()
    wall, cpu = timed_chunks(apply, ops)
    return wall, cpu, len(fills)


def worker(variant: str, path: str) -> None:
    """In a child process: time ``variant`` on the workload at ``path``; print JSON."""
    with open(path, "rb") as f:
        data = pickle.load(f)  # our own temporary file
    if variant.startswith("liquibook"):
        wall, cpu, fills = _time_liquibook(data["lb_prefill"], data["lb_ops"],
                                           listener=variant == "liquibook_listener")
        print(json.dumps({"commands_per_second": wall, "cpu_commands_per_second": cpu,
                          "fills": fills}))
        return
    from tickline._build import describe
    from tickline.bench.matching import run_throughput_clocks

    wall, cpu, engine = run_throughput_clocks(data["workload"])
    print(json.dumps({"commands_per_second": wall, "cpu_commands_per_second": cpu,
                      "build": describe(), "digest": engine.digest()}))


def _child(variant: str, path: Path) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("TICKLINE_PURE", None)
    if variant == "pure":
        env["TICKLINE_PURE"] = "1"
    code = f"from tickline.bench.peers import worker; worker({variant!r}, {str(path)!r})"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from ``/proc/stat`` ((0, 0) where there is none)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, p25, p75 and max of ``values`` (at least one), rounded."""
    xs = sorted(values)
    if len(xs) > 1:
        p25, _, p75 = statistics.quantiles(xs, n=4, method="inclusive")
    else:
        p25 = p75 = xs[0]
    digits = 3 if xs[-1] < 100 else 0
    return {k: round(v, digits) or 0.0 for k, v in
            (("median", statistics.median(xs)), ("min", xs[0]), ("p25", p25), ("p75", p75),
             ("max", xs[-1]))}


def run_peers(workload: Workload, rounds: int = 9, advance: Any = None) -> dict[str, Any]:
    """Every variant ``rounds`` times, interleaved (the order rotates each round), on the
    same commands; medians and spreads by wall clock and CPU time, ratios of medians and
    medians of the per-round (paired) ratios."""
    from tickline._build import build_info

    variants = ["pure"]
    if build_info()["build"] == "compiled":
        variants.append("compiled")
    if liquibook_available():
        variants += ["liquibook_listener", "liquibook"]
    lb_prefill, lb_ops = _liquibook_ops(workload)
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    load_before = os.getloadavg()
    steal0, total0 = _steal_ticks()
    with tempfile.TemporaryDirectory(prefix="tickline-peers-") as tmp:
        path = Path(tmp) / "workload.pickle"
        with path.open("wb") as f:
            pickle.dump({"workload": workload, "lb_prefill": lb_prefill, "lb_ops": lb_ops}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        for n in range(rounds):
            shift = n % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                samples[variant].append(_child(variant, path))
                if advance is not None:
                    advance(1)
    steal1, total1 = _steal_ticks()
    out: dict[str, Any] = {"rounds": rounds, "commands": len(workload.commands),
                           "load_average_before": [round(x, 2) for x in load_before],
                           "load_average_after": [round(x, 2) for x in os.getloadavg()],
                           "steal_fraction": round((steal1 - steal0)
                                                   / max(1, total1 - total0), 4)}
    for variant in VARIANTS:
        got = samples.get(variant, [])
        wall = [s["commands_per_second"] for s in got]
        cpu = [s["cpu_commands_per_second"] for s in got]
        out[f"{variant}_commands_per_second"] = round(statistics.median(wall)) if wall else None
        out[f"{variant}_cpu_commands_per_second"] = (round(statistics.median(cpu))
                                                     if cpu else None)
        out[f"{variant}_all"] = [round(r) for r in wall]
        out[f"{variant}_cpu_all"] = [round(r) for r in cpu]
        out[f"{variant}_spread"] = spread(wall) if wall else None
        out[f"{variant}_cpu_spread"] = spread(cpu) if cpu else None
    if "compiled" in samples:
        out["compiled_build"] = samples["compiled"][0]["build"]
        digests = {s["digest"] for v in ("pure", "compiled") for s in samples[v]}
        out["same_books"] = len(digests) == 1
    if "liquibook_listener" in samples:
        out["liquibook_fills"] = samples["liquibook_listener"][0]["fills"]
    out["ratios"] = _ratios(out, "")
    out["ratios_cpu"] = _ratios(out, "cpu_")
    out["paired_ratios"] = _paired(out, "")
    out["paired_ratios_cpu"] = _paired(out, "cpu_")
    return out


RATIOS = (("compiled", "pure"), ("compiled", "liquibook_listener"),
          ("pure", "liquibook_listener"), ("compiled", "liquibook"), ("pure", "liquibook"))
"""The reported ratios, ``<a>_vs_<b>``: each tickline build over each liquibook variant,
and compiled over pure."""


def _ratios(r: dict[str, Any], clock: str) -> dict[str, float | None]:
    """Ratio of the medians (``clock`` "" for wall, "cpu_" for CPU time)."""
    def ratio(a: str, b: str) -> float | None:
        x = r.get(f"{a}_{clock}commands_per_second")
        y = r.get(f"{b}_{clock}commands_per_second")
        return round(x / y, 2) if x and y else None

    return {f"{a}_vs_{b}": ratio(a, b) for a, b in RATIOS}


def _paired(r: dict[str, Any], clock: str) -> dict[str, dict[str, float] | None]:
    """Per ratio, the spread of the per-round ratios (a and b of one round ran back to
    back)."""
    out: dict[str, dict[str, float] | None] = {}
    for a, b in RATIOS:
        xs, ys = r[f"{a}_{clock}all"], r[f"{b}_{clock}all"]
        out[f"{a}_vs_{b}"] = (spread([x / y for x, y in zip(xs, ys, strict=True)])
                              if xs and ys else None)
    return out
