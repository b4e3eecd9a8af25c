"""``tickline cluster-engine`` subprocesses for the cluster tests: started with their output
in a log file, the READY line awaited, always stopped."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.served import ROOT, TICKLINE


class EngineProc:
    """One engine node of ``shard`` against ``url``; its output goes to ``log``."""

    def __init__(self, url: str, log: Path, *, shard: int = 0, node_id: str = "",
                 lease: float = 1.0, snapshot_every: int = 0, wait_ready: bool = True) -> None:
        self.log = log
        self.node_id = node_id or log.stem
        self._out = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [*TICKLINE, "cluster-engine", "--cluster", url, "--shard", str(shard),
             "--lease", str(lease), "--snapshot-every", str(snapshot_every),
             "--node-id", self.node_id],
            stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT)
        if wait_ready:
            self.wait_for("READY ")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"engine exited {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} not in the engine's output:\n{self.text()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
