"""Configuration validation: a bad value is a ConfigError naming the field, never a traceback
from deep inside the server or a silently unusable limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickline.config import ConfigError, load_config
from tickline.matching import (
    BUY,
    EngineConfig,
    MatchingEngine,
    NewOrder,
    Rejected,
    RejectReason,
    RiskLimits,
)


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


ACCOUNTS = """
[[accounts]]
id = 7
name = "desk"
key = "desk-key-7"
admin = true
max_order_quantity = 100
max_order_notional = 50000
max_open_orders = 5
max_position = 300

[[accounts]]
id = 8
name = "plain"
key = "plain-key-8"
"""


def test_account_admin_flag_and_risk_limits_map_into_the_engine_config(tmp_path: Path) -> None:
    path = tmp_path / "tickline.toml"
    path.write_text(ACCOUNTS)
    config = load_config(path)
    desk, plain = config.accounts
    assert (desk.admin, plain.admin) == (True, False)
    engine_config = config.engine_config()
    assert engine_config.account_limits == {7: RiskLimits(
        max_order_quantity=100, max_order_notional=50000, max_open_orders=5, max_position=300)}
    # the engine enforces them: at the limit accepted, above rejected with the typed code
    engine = MatchingEngine(config.instruments, engine_config)
    symbol = config.instruments[0].symbol
    ok = engine.process(NewOrder(seq=1, ts=1, account=7, symbol=symbol, side=BUY,
                                 quantity=100, price=500))
    assert type(ok[0]).__name__ == "Accepted"
    (rej,) = engine.process(NewOrder(seq=2, ts=2, account=7, symbol=symbol, side=BUY,
                                     quantity=101, price=100))
    assert isinstance(rej, Rejected)
    assert rej.reason == RejectReason.RISK_MAX_QUANTITY
    assert "max_order_quantity 100" in rej.text


def test_no_limits_configured_gives_the_engine_config_of_before(tmp_path: Path) -> None:
    """A configuration without risk keys must give the same EngineConfig as before they
    existed: the journal records it, and a differing one refuses to open old journals."""
    assert load_config().engine_config() == EngineConfig(
        account_stp={a.id: a.stp for a in load_config().accounts})
    assert load_config().engine_config().account_limits == {}


@pytest.mark.parametrize("field", ["max_order_quantity", "max_order_notional",
                                   "max_open_orders", "max_position"])
def test_negative_risk_limits_are_config_errors_naming_the_field(tmp_path: Path,
                                                                 field: str) -> None:
    path = tmp_path / "tickline.toml"
    path.write_text(ACCOUNTS.replace(f"{field} = ", f"{field} = -"))
    with pytest.raises(ConfigError, match=f"account 'desk': {field} must be >= 0"):
        load_config(path)


@pytest.mark.parametrize(("line", "match"), [
    ('max_position = "lots"', "max_position"),
    ("max_open_orders = 1.5", "max_open_orders"),
    ('admin = "yes"', "admin"),
    ("max_orders = 3", "max_orders"),  # a misspelt key is refused, not ignored
])
def test_mistyped_or_unknown_account_keys_are_config_errors(tmp_path: Path, line: str,
                                                            match: str) -> None:
    path = tmp_path / "tickline.toml"
    path.write_text(ACCOUNTS + line + "\n")
    with pytest.raises(ConfigError, match=match):
        load_config(path)
