"""A real ``tickline serve`` subprocess for end-to-end tests (crash, restart, journal lock,
snapshot failures): free ports, the READY line parsed, HTTP helpers, always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKLINE = [sys.executable, "-m", "tickline.cli"]


def serve_argv(journal: Path | str, *extra: str) -> list[str]:
    """The command line of ``tickline serve`` on free ports with ``journal``."""
    shards = os.environ.get("TICKLINE_TEST_SHARDS")  # the same tests with shard processes
    if shards and "--shards" not in extra:
        extra = ("--shards", shards, *extra)
    return [*TICKLINE, "serve", "--port", "0", "--http-port", "0", "--journal-dir",
            str(journal), *extra]


class Served:
    """A ``tickline serve`` subprocess on free ports; always stopped by the test.

    ``wrapper`` is prepended to the command (e.g. ``nsenter`` into a mount namespace)."""

    def __init__(self, journal: Path | str, *extra: str, wrapper: Sequence[str] = ()) -> None:
        self.proc = subprocess.Popen(
            [*wrapper, *serve_argv(journal, *extra)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines: list[str] = []
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.close()
                raise AssertionError(f"server exited before READY:\n{''.join(self.lines)}")
            self.lines.append(line)
            if line.startswith("READY "):
                fields = dict(kv.split("=") for kv in line.split()[1:])
                self.port = int(fields["port"])
                self.http_port = int(fields["http_port"])
                break
            assert time.monotonic() < deadline, "no READY line within 30 s"

    def get(self, path: str) -> tuple[int, bytes]:
        """``GET path``: the status code and the body (also for 4xx/5xx answers)."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        """SIGTERM; the exit code. The rest of the output is in :attr:`lines` afterwards."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            if not self.proc.stdout.closed:
                self.lines.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()

    def output(self) -> str:
        return "".join(self.lines)


def run_tickline(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one ``tickline`` command to completion (output captured)."""
    return subprocess.run([*TICKLINE, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
