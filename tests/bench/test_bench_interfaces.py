"""Other tools read the benchmarks' JSON: the keys the issues name must be there, with
numbers in them. Tiny runs (the numbers themselves are measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tickline.cli import app


def _run(args: list[str], out: Path) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(out.read_text())
    return data


def test_bench_matching_json_keys(tmp_path: Path) -> None:
    data = _run(["bench", "matching", "--commands", "3000", "--seed-port-commands", "500",
                 "--memory-orders", "2000"], tmp_path / "m.json")
    assert isinstance(data["commands_per_second"], int) and data["commands_per_second"] > 0
    assert isinstance(data["seed_port_commands_per_second"], int)
    assert data["seed_port_commands_per_second"] > 0
    latency = data["latency_ns"]
    assert isinstance(latency, dict)
    assert {"p50", "p99", "p99_99", "max"} <= set(latency)
    assert latency["p50"] <= latency["p99"] <= latency["p99_99"] <= latency["max"]


def test_bench_matching_risk_json_keys(tmp_path: Path) -> None:
    """``--risk``: both throughputs, the overhead, and the check that the generous limits
    rejected nothing (same books and ids as without them)."""
    data = _run(["bench", "matching", "--commands", "3000", "--no-seed-port",
                 "--memory-orders", "0", "--risk", "--risk-rounds", "1"], tmp_path / "r.json")
    risk: dict[str, Any] = data["risk"]  # type: ignore[assignment]
    assert isinstance(risk, dict)
    assert risk["commands_per_second_off"] > 0 and risk["commands_per_second_on"] > 0
    assert isinstance(risk["overhead_pct"], float)
    assert len(risk["overhead_pct_p25_p75"]) == 2
    assert risk["ratio"] == pytest.approx(1 + risk["overhead_pct"] / 100, abs=1e-3)
    assert isinstance(risk["cpu_overhead_pct"], float)
    assert len(risk["cpu_overhead_pct_p25_p75"]) == 2
    assert risk["build"].startswith(("compiled", "pure"))
    assert risk["same_outcome"] is True
    assert risk["accounts_with_limits"] > 100


def test_bench_processor_json_keys(tmp_path: Path) -> None:
    data = _run(["bench", "processor", "--events", "20000", "--baseline-events", "5000",
                 "--paced-rate", "5000", "--shm-records", "20000", "--mpq-records", "2000",
                 "--gc-events", "0"], tmp_path / "p.json")
    for key in ("events_per_second", "queue_baseline_events_per_second"):
        assert isinstance(data[key], (int, float)) and data[key] > 0, key


def test_bench_journal_json_keys_and_kept_journal_replays(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    data = _run(["bench", "journal", "--records", "3000", "--recovery-records", "0",
                 "--keep", str(keep)], tmp_path / "j.json")
    for key in ("appends_per_second", "replay_records_per_second"):
        assert isinstance(data[key], (int, float)) and data[key] > 0, key
    replayed = CliRunner().invoke(app, ["replay", str(keep), "--json", str(tmp_path / "r.json")])
    assert replayed.exit_code == 0, replayed.output
    replay = json.loads((tmp_path / "r.json").read_text())
    assert replay["last_sequence"] >= 3000
    assert len(replay["digest"]) == 32


def test_bench_venue_json_keys(tmp_path: Path) -> None:
    data = _run(["bench", "venue", "--missed", "2000", "--mass", "300"], tmp_path / "v.json")
    assert data["missed_reports"] == 2000
    for key in ("resume_journal_seconds", "resume_journal_reports_per_second",
                "resume_snapshot_seconds", "resume_memory_seconds", "mass_cancel_seconds",
                "mass_cancel_orders_per_second"):
        value = data[key]
        assert isinstance(value, float) and value > 0, key
    assert data["mass_cancel_orders"] == 300


def test_bench_matching_mix_peers_scale_json_keys(tmp_path: Path) -> None:
    """``--mix`` (plain vs stops+icebergs), ``--peers`` (the keys issue 13 names; compiled
    is null without a compiled build, liquibook's null without the peers extra) and
    ``--scale`` (one cell per size and spread)."""
    from tickline._build import build_info
    from tickline.bench.peers import liquibook_available

    data = _run(["bench", "matching", "--commands", "2000", "--no-seed-port",
                 "--memory-orders", "0", "--mix", "--peers", "--peer-rounds", "1", "--scale",
                 "--scale-commands", "1000", "--scale-resting", "200,400"],
                tmp_path / "x.json")
    mix: dict[str, Any] = data["mix"]  # type: ignore[assignment]
    assert mix["plain_commands_per_second"] > 0
    assert mix["stops_icebergs_commands_per_second"] > 0
    assert mix["mix_counts"]["stop"] > 0 and mix["mix_counts"]["iceberg"] > 0
    assert isinstance(data["pure_commands_per_second"], int)
    assert data["pure_commands_per_second"] > 0
    compiled = data["compiled_commands_per_second"]
    assert (compiled is None) == (build_info()["build"] == "pure")
    listener = data["liquibook_listener_commands_per_second"]
    assert (listener is None) == (not liquibook_available())
    if listener is not None:
        peers: dict[str, Any] = data["peers"]  # type: ignore[assignment]
        assert peers["liquibook_fills"] > 0
        assert data["liquibook_commands_per_second"] > 0
    scale: list[dict[str, Any]] = data["scale"]  # type: ignore[assignment]
    assert [(c["ticks"], c["resting_orders"]) for c in scale] == [
        (10, 200), (10, 400), (100_000, 200), (100_000, 400)]
    for cell in scale:
        assert cell["commands_per_second"] > 0 and cell["p99_99_ns"] >= cell["p50_ns"] > 0


def test_bench_exchange_json_keys(tmp_path: Path) -> None:
    """Both durabilities through the real loop: commands/s, per-stage time, and every
    command's events, reports and market data accounted for."""
    data = _run(["bench", "exchange", "--commands", "2000", "--batch", "32"],
                tmp_path / "e.json")
    loops: list[dict[str, Any]] = data["loops"]  # type: ignore[assignment]
    assert [loop["durability"] for loop in loops] == ["none", "batch"]
    for loop in loops:
        assert loop["commands_per_second"] > 0
        assert set(loop["stage_ns_per_command"]) == {"match", "journal", "publish"}
        assert all(v > 0 for v in loop["stage_ns_per_command"].values())
        assert loop["events"] > 2000 and loop["reports_to_submitters"] > 0
        assert loop["market_data_messages"] > 0
    assert loops[0]["events"] == loops[1]["events"]  # same commands, same outcome
    assert data["commands_per_second_none"] == loops[0]["commands_per_second"]
    assert isinstance(data["engine_only_commands_per_second"], int)
