"""The one way the benchmark scripts count instructions: run a script's own ``run`` mode under
callgrind and read the total.

``PYTHONHASHSEED=0`` (dict and set orders, hence the code paths, the same every run) and the
build chosen explicitly (``TICKLINE_PURE`` cleared, or set for the pure build), so the counts
of two runs differ only by what they ran. The scripts take (N2 - N1) of two such runs to
cancel start-up. Used by ``exchange_callgrind.py``, ``peers_callgrind.py`` and
``cluster_gateway_cost.py`` (each ``import callgrind``: run as ``python benchmarks/X.py``,
this folder is on the path)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence


def instructions(script: str, args: Sequence[str], *, pure: bool) -> int:
    """Instructions callgrind counted for ``python SCRIPT ARGS...`` (the pure-Python modules
    with ``pure``). Raises RuntimeError when valgrind printed no total."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("TICKLINE_PURE", None)
    if pure:
        env["TICKLINE_PURE"] = "1"
    with tempfile.TemporaryDirectory(prefix="tickline-cg-") as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
             sys.executable, script, *args],
            env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total for {' '.join(args)}:\n{done.stderr[-2000:]}")
    return int(found.group(1))
