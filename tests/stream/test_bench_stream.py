"""`tickline bench stream` runs end to end on a tiny workload and writes the JSON keys."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tickline.cli import app


def test_bench_stream_writes_the_required_keys(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    result = CliRunner().invoke(app, ["bench", "stream", "--commands", "3000", "--batch", "50",
                                      "--capacity", "500", "--no-uvloop", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["deliveries_per_second"] > 0
    assert data["deliveries_per_second_with_slow_subscriber"] > 0
    stalled = [c for c in data["cases"] if c["stalled"]]
    assert stalled and all(c["stalled_queue"]["high_water"] <= 500 for c in stalled)
    assert all(c["stalled_queue"]["dropped"] > 0 for c in stalled)
    ten = next(c for c in data["cases"] if c["subscribers"] == 10 and not c["stalled"])
    assert ten["deliveries"] == 10 * ten["messages"]  # every reader got every message
    assert set(ten["latency_ns"]) == {"p50", "p90", "p99", "p99.9", "max"}
