"""The operator commands: tickline replay, journal verify, journal dump (via CliRunner)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from tickline.cli import app
from tickline.journal.format import list_segments

from .conftest import Mix

runner = CliRunner()


def test_replay_prints_the_book_and_writes_json(journal_of: Callable[..., Path], mix: Mix,
                                                tmp_path: Path) -> None:
    d = journal_of(snapshot_at=(3000,))
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["replay", str(d), "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["last_sequence"] == len(mix.commands)
    assert doc["digest"] == mix.digest_after(len(mix.commands))
    assert doc["digest"] in result.output
    assert "XCH" in result.output and "bid" in result.output

    result = runner.invoke(app, ["replay", str(d), "--to", "2500", "--symbol", "XCH",
                                 "--no-snapshot", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["last_sequence"] == 2500 and doc["digest"] == mix.digest_after(2500)
    assert doc["records_replayed"] == 2500 and doc["snapshot_seq"] == 0

    result = runner.invoke(app, ["replay", str(d), "--symbol", "NOPE"])
    assert result.exit_code == 2 and "unknown symbol 'NOPE'" in result.output


def test_replay_compare_exit_codes(journal_of: Callable[..., Path]) -> None:
    a = journal_of("a", n=2000)
    b = journal_of("b", n=2000)
    c = journal_of("c", n=1800)
    same = runner.invoke(app, ["replay", str(a), "--compare", str(b)])
    assert same.exit_code == 0 and "identical" in same.output
    diff = runner.invoke(app, ["replay", str(a), "--compare", str(c)])
    assert diff.exit_code == 1
    assert "diverged after 1800 identical commands, at seq 1801" in diff.output


def test_verify_exit_codes_name_file_and_offset(journal_of: Callable[..., Path]) -> None:
    d = journal_of(segment_bytes=16384)
    ok = runner.invoke(app, ["journal", "verify", str(d)])
    assert ok.exit_code == 0 and "OK" in ok.output
    path = list_segments(d)[1][1]
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)[0]
        f.seek(1000)
        f.write(bytes([byte ^ 1]))
    bad = runner.invoke(app, ["journal", "verify", str(d)], terminal_width=400)
    assert bad.exit_code == 1
    assert "CORRUPT" in bad.output and path.name in bad.output and "offset" in bad.output


def test_dump_prints_records(journal_of: Callable[..., Path], mix: Mix) -> None:
    d = journal_of(n=500)
    result = runner.invoke(app, ["journal", "dump", str(d), "--from", "10", "--limit", "3"],
                           terminal_width=300)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "10" and repr(mix.commands[9]) in lines[0]
    as_json = runner.invoke(app, ["journal", "dump", str(d), "--limit", "2", "--json"])
    docs = [json.loads(line) for line in as_json.output.strip().splitlines()]
    assert [doc["seq"] for doc in docs] == [1, 2]
