"""``tickline bench ws-fanout`` end to end, tiny: real clients in another process receive
exactly what the gateway sent (the number itself is measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tickline.cli import app


def test_bench_ws_fanout_json_keys_and_delivery(tmp_path: Path) -> None:
    out = tmp_path / "ws.json"
    result = CliRunner().invoke(app, ["bench", "ws-fanout", "--clients", "4", "--seconds",
                                      "0.5", "--chunk", "100", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["clients"] == 4 and data["chunk"] == 100
    assert isinstance(data["messages_per_second"], float) and data["messages_per_second"] > 0
    assert data["messages"] > 0 and data["commands"] > 0 and data["frames"] > 0
    assert data["cpu_seconds"] > 0 and data["messages_per_cpu_second"] > 0
    assert data["received"] == data["sent_total"]  # every message sent was received
    assert data["min_client"] == data["max_client"]  # each client got the same stream
    assert data["slow_disconnects"] == 0
