"""Configuration validation: a bad value is a ConfigError naming the field, never a traceback
from deep inside the server or a silently unusable limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickline.config import ConfigError, load_config


@pytest.mark.parametrize(("section", "line", "field"), [
    ("server", "inbound_capacity = 100000", "server.inbound_capacity"),  # not a power of two
    ("server", "inbound_capacity = 0", "server.inbound_capacity"),
    ("server", "max_batch = 0", "server.max_batch"),
    ("server", "interval_ms = -1", "server.interval_ms"),
    ("server", "snapshot_every = -5", "server.snapshot_every"),
    ("limits", "burst = 0", "limits.burst"),
    ("limits", "orders_per_second = 0", "limits.orders_per_second"),
    ("limits", "max_in_flight = 0", "limits.max_in_flight"),
    ("limits", "max_sessions = 0", "limits.max_sessions"),
    ("limits", "login_timeout_seconds = 0", "limits.login_timeout_seconds"),
    ("limits", "max_client_order_id_bytes = 0", "limits.max_client_order_id_bytes"),
    ("limits", "max_pending_logons = 0", "limits.max_pending_logons"),
    ("limits", "max_pending_logons_per_address = 0", "limits.max_pending_logons_per_address"),
    ("limits", "logon_failures_per_second = 0", "limits.logon_failures_per_second"),
    ("limits", "logon_failure_burst = 0", "limits.logon_failure_burst"),
])
def test_bad_numbers_are_config_errors(tmp_path: Path, section: str, line: str,
                                       field: str) -> None:
    """Regression: ``inbound_capacity = 100000`` passed validation and ``tickline serve``
    died with a ValueError traceback from the ring; ``burst = 0`` or
    ``orders_per_second = 0`` were accepted and rate-limited every order."""
    path = tmp_path / "tickline.toml"
    path.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError, match=field):
        load_config(path)


def test_the_documented_values_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "tickline.toml"
    path.write_text("[server]\ninbound_capacity = 1024\nmax_batch = 1\nsnapshot_every = 0\n"
                    "[limits]\nheartbeat_seconds = 0\n")
    assert load_config(path).server.inbound_capacity == 1024
