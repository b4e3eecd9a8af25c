"""The existing end-to-end order-entry tests, run again against 2 shard processes
(``TICKLINE_TEST_SHARDS=2`` switches the harnesses in ``tests/gateway/binary_harness.py`` and
``tests/served.py``). Tests that read one in-process engine's internals (``engine.book``,
``engine.check``) or open the journal as one directory (``tickline.journal.replay``) are
single-process only; see docs/shards.md."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.served import ROOT

SUITES = [
    "tests/gateway/test_binary_gateway.py",
    "tests/gateway/test_report_path.py",
    "tests/gateway/test_binary_client.py",
    "tests/gateway/test_admin_status_stream.py",
    "tests/gateway/test_venue_sessions.py",
]
SINGLE_PROCESS_ONLY = ("not test_stop_orders_over_the_binary_gateway_report_their_trigger and "
                       "not test_icebergs_over_the_binary_gateway_show_only_their_slice")


@pytest.mark.slow
def test_gateway_end_to_end_suites_pass_with_two_shard_processes() -> None:
    env = {**os.environ, "TICKLINE_TEST_SHARDS": "2"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-x", *SUITES, "-k", SINGLE_PROCESS_ONLY],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
