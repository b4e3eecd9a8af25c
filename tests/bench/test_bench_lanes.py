"""``tickline bench lanes`` on a small ring: the cancel lane shows, and the JSON says so."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tickline.bench.lanes import measure
from tickline.cli import app


def test_cancels_wait_less_than_new_orders_only_with_the_lane() -> None:
    kw = {"capacity": 512, "max_batch": 32, "cancels": 20, "cancel_every": 2}
    lanes = measure(lanes=True, **kw)  # type: ignore[arg-type]
    one = measure(lanes=False, **kw)  # type: ignore[arg-type]
    assert lanes["cancel"]["count"] == one["cancel"]["count"] == 20
    # With the lane a cancel skips the ~15 batches queued ahead of it; with one lane it
    # waits behind them like every new order.
    assert lanes["cancel"]["p50"] * 5 < lanes["new_order"]["p50"]
    assert lanes["cancel"]["p50"] * 5 < one["cancel"]["p50"]
    assert one["cancel"]["p50"] * 3 > one["new_order"]["p50"]


def test_cli_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "lanes.json"
    result = CliRunner().invoke(app, ["bench", "lanes", "--capacity", "256", "--max-batch",
                                      "32", "--cancels", "5", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["benchmark"] == "lanes" and data["capacity"] == 256
    for mode in ("with_lanes", "one_lane"):
        assert {"p50", "p99"} <= set(data[mode]["cancel"]) and data[mode]["cancel"]["count"] == 5
