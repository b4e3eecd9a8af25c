"""Binary vs FIX round trip through ``tickline serve``, trees interleaved (an A/B harness).

For each round, each tree (a checkout with its own ``.venv``) and each configuration
(binary 10k/s, FIX 10k/s, FIX 20k/s by default) it starts a fresh server **on a fresh journal
directory** (``serve`` journals even with durability ``none`` and recovers on restart: on a
reused directory the FIX sessions resume from the journal, which is another benchmark), runs
one ``tickline loadgen`` against it, and records the loadgen JSON and the server's CPU time
(utime + stime from ``/proc``) over the run. Rounds alternate which tree goes first::

    python benchmarks/gateway_ab.py --rounds 4 --out /tmp/ab BASE_TREE NEW_TREE
    python benchmarks/gateway_ab.py --config fix:25000 --rounds 1 --out /tmp/ab .

Prints one line per run and writes ``rows.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_CONFIGS = ["binary:10000", "fix:10000", "fix:20000"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(tree: Path, proto: str, rate: int, out: Path, tag: str,
            ports: tuple[int, int, int]) -> dict[str, Any]:
    """A fresh server on a fresh journal from ``tree``, one loadgen run, the result row."""
    tickline = str(tree / ".venv" / "bin" / "tickline")
    port, http_port, fix_port = ports
    journal = tempfile.mkdtemp(prefix="gateway-ab-")
    server = subprocess.Popen(
        [tickline, "serve", "--durability", "none", "--port", str(port),
         "--http-port", str(http_port), "--fix-port", str(fix_port), "--journal-dir", journal],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("READY"):
                break
        time.sleep(0.5)
        result_file = out / f"{tag}-{proto}-{rate}.json"
        before, load = cpu_seconds(server.pid), os.getloadavg()[0]
        subprocess.run([tickline, "loadgen", "--protocol", proto, "--rate", str(rate),
                        "--duration", "5", "--warmup", "1", "--wait", "sleep",
                        "--port", str(port), "--fix-port", str(fix_port),
                        "--json", str(result_file)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        used = cpu_seconds(server.pid) - before
        result = json.loads(result_file.read_text()) if result_file.exists() else {}
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(journal, ignore_errors=True)
    return {"tree": str(tree), "proto": proto, "rate": rate, "load": load,
            "server_cpu_s": used, "result": result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", action="append", help="PROTO:RATE (repeatable)")
    parser.add_argument("--ports", default="17001,17080,19878", help="binary,http,fix")
    args = parser.parse_args()
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.config or DEFAULT_CONFIGS]
    p, h, f = (int(x) for x in args.ports.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in range(args.rounds):
        for tree in (args.trees if r % 2 == 0 else args.trees[::-1]):
            for proto, rate in configs:
                row = one_run(tree.resolve(), proto, rate, args.out,
                              f"{tree.resolve().name}-{r}", (p, h, f))
                row["round"] = r
                rows.append(row)
                res, lat = row["result"], row["result"].get("latency_us", {})
                print(f"{r} {tree.resolve().name} {proto} {rate} load={row['load']:.1f} "
                      f"cpu={row['server_cpu_s']:.2f}s achieved={res.get('achieved_rate')} "
                      f"p50={lat.get('p50')} p99={lat.get('p99')} p99.9={lat.get('p99_9')} us",
                      flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
