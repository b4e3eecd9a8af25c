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
"""

from __future__ import annotations

import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tickline.bench.workload import Workload
from tickline.matching import BUY, Accepted, Cancel, NewOrder, Replace, TimeInForce

CHUNK = 50_000
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


def _time_liquibook(prefill: list[tuple[Any, ...]], ops: list[tuple[Any, ...]],
                    listener: bool) -> tuple[float, int]:
    """Commands per second of liquibook over ``ops``; fills seen by the listener."""
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

    apply(prefill)
    fills.clear()
    clock = time.perf_counter_ns
    elapsed = 0
    for start in range(0, len(ops), CHUNK):
        chunk = ops[start:start + CHUNK]
        t0 = clock()
        apply(chunk)
        elapsed += clock() - t0
    return len(ops) / (elapsed / 1e9), len(fills)


def worker(variant: str, path: str) -> None:
    """In a child process: time ``variant`` on the workload at ``path``; print JSON."""
    with open(path, "rb") as f:
        data = pickle.load(f)
    if variant.startswith("liquibook"):
        cps, fills = _time_liquibook(data["lb_prefill"], data["lb_ops"],
                                     listener=variant == "liquibook_listener")
        print(json.dumps({"commands_per_second": cps, "fills": fills}))
        return
    from tickline._build import describe
    from tickline.bench.matching import run_throughput

    cps, engine = run_throughput(data["workload"])
    print(json.dumps({"commands_per_second": cps, "build": describe(),
                      "digest": engine.digest()}))


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


def run_peers(workload: Workload, rounds: int = 3, advance: Any = None) -> dict[str, Any]:
    """Every variant ``rounds`` times, interleaved, on the same commands; medians, ratios."""
    from tickline._build import build_info

    variants = ["pure"]
    if build_info()["build"] == "compiled":
        variants.append("compiled")
    if liquibook_available():
        variants += ["liquibook_listener", "liquibook"]
    lb_prefill, lb_ops = _liquibook_ops(workload)
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="tickline-peers-") as tmp:
        path = Path(tmp) / "workload.pickle"
        with path.open("wb") as f:
            pickle.dump({"workload": workload, "lb_prefill": lb_prefill, "lb_ops": lb_ops}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        for _ in range(rounds):
            for variant in variants:
                samples[variant].append(_child(variant, path))
                if advance is not None:
                    advance(1)
    out: dict[str, Any] = {"rounds": rounds, "commands": len(workload.commands)}
    for variant in VARIANTS:
        rates = [s["commands_per_second"] for s in samples.get(variant, [])]
        out[f"{variant}_commands_per_second"] = round(statistics.median(rates)) if rates else None
        out[f"{variant}_all"] = [round(r) for r in rates]
    if "compiled" in samples:
        out["compiled_build"] = samples["compiled"][0]["build"]
        digests = {s["digest"] for v in ("pure", "compiled") for s in samples[v]}
        out["same_books"] = len(digests) == 1
    if "liquibook_listener" in samples:
        out["liquibook_fills"] = samples["liquibook_listener"][0]["fills"]
    out["ratios"] = _ratios(out)
    return out


def _ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """Each tickline build over each liquibook variant, and compiled over pure."""
    def ratio(a: str, b: str) -> float | None:
        x, y = r.get(f"{a}_commands_per_second"), r.get(f"{b}_commands_per_second")
        return round(x / y, 2) if x and y else None

    return {
        "compiled_vs_pure": ratio("compiled", "pure"),
        "compiled_vs_liquibook_listener": ratio("compiled", "liquibook_listener"),
        "pure_vs_liquibook_listener": ratio("pure", "liquibook_listener"),
        "compiled_vs_liquibook": ratio("compiled", "liquibook"),
        "pure_vs_liquibook": ratio("pure", "liquibook"),
    }
