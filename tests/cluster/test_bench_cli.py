"""``tickline bench cluster --batches-in-flight N``: the gateway the bench starts gets
``[server] cluster_batches_in_flight = N`` (the value reaches ``bench.cluster.run``; a
negative one is refused before anything starts)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from tickline.cli import app


def test_batches_in_flight_reaches_the_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    from tickline.bench import cluster as bc

    seen: dict[str, Any] = {}
    monkeypatch.setattr(bc, "run", lambda **kw: seen.update(kw))
    result = CliRunner().invoke(app, ["bench", "cluster", "--rate", "1000",
                                      "--batches-in-flight", "8"])
    assert result.exit_code == 0, result.output
    assert seen["batches_in_flight"] == 8 and seen["rates"] == [1000.0]
    seen.clear()
    assert CliRunner().invoke(app, ["bench", "cluster"]).exit_code == 0
    assert seen["batches_in_flight"] is None  # the configuration's default


def test_negative_batches_in_flight_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from tickline.bench import cluster as bc

    monkeypatch.setattr(bc, "run", lambda **kw: pytest.fail("started"))
    result = CliRunner().invoke(app, ["bench", "cluster", "--batches-in-flight", "-1"])
    assert result.exit_code == 2
