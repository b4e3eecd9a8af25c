"""``tickline bench shards``: the JSON keys the issue names, and the shard processes really
matched every command (their engine digests equal a local replay of the same stream)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tickline.bench.shards import run_once
from tickline.bench.workload import exchange_core_mix
from tickline.cli import app


def test_bench_shards_json_keys(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["bench", "shards", "--shards", "1,2", "--commands",
                                      "2000", "--runs", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    cps = data["commands_per_second"]
    assert set(cps) == {"1", "2"} and all(v > 0 for v in cps.values())
    assert set(data["scaling"]) == {"1", "2"} and data["scaling"]["1"] == 1.0


def test_bench_shards_process_every_command_exactly() -> None:
    works = [exchange_core_mix(3000, seed=1 + k, symbols=2) for k in range(2)]
    res = run_once(works, 64, verify=True)  # raises if a shard's state differs
    assert res["commands"] == 6000
