"""The admin endpoint and `tickline admin` against a real server process: halt, resume,
kill, enable are journaled commands; a missing or wrong key changes nothing."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.served import Served, run_tickline
from tickline.client import Client, OrderRejectedError
from tickline.matching import RejectReason

KEY = "admin-key-0123456789"
HOST = "127.0.0.1"


def post(server: Served, path: str, key: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Length": "0"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(f"http://{HOST}:{server.http_port}{path}", method="POST",
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read())


@pytest.fixture
def server(tmp_path: Path) -> Served:
    config = tmp_path / "admin.toml"
    config.write_text(f'[server]\nadmin_key = "{KEY}"\n')
    served = Served(tmp_path / "journal", "--config", str(config))
    yield served  # type: ignore[misc]
    served.close()


def test_admin_actions_need_the_key_and_change_nothing_without_it(server: Served) -> None:
    before = server.get_json("/health")
    for key in (None, "wrong-key-wrong-key", f"{KEY}x"):
        status, body = post(server, "/admin/halt?symbol=AAPL", key)
        assert status == 401 and body["error"] == "unauthorized"
    assert post(server, "/admin/halt?symbol=NOPE", KEY)[0] == 400
    assert post(server, "/admin/kill?account=abc", KEY)[1]["error"] == "bad_target"
    assert post(server, "/admin/kill?account=999", KEY)[1]["error"] == "unknown_account"
    assert post(server, "/admin/explode?x=1", KEY)[0] == 404
    assert server.get("/admin/halt?symbol=AAPL")[0] == 405  # GET is not an action
    after = server.get_json("/health")
    assert after["last_seq"] == before["last_seq"]  # nothing was sequenced


def test_halt_resume_kill_enable_over_http_and_the_cli(server: Served) -> None:
    async def scenario() -> None:
        async with await Client.connect(HOST, server.port, "alice-key") as alice:
            resting = [await alice.new_order("AAPL", "buy", 1, f"9{i}.00") for i in range(3)]
            status, body = post(server, "/admin/kill?account=2", KEY)
            assert status == 200 and body["cancelled"] == 3 and body["command"] == \
                "SetAccountStatus"
            cancelled = {r.order_id for r in await alice.take_reports(3)}
            assert cancelled == {a.order_id for a in resting}
            with pytest.raises(OrderRejectedError) as disabled:
                await alice.new_order("AAPL", "buy", 1, "90.00")
            assert disabled.value.reason == RejectReason.ACCOUNT_DISABLED
            url = f"http://{HOST}:{server.http_port}"
            done = run_tickline("admin", "enable", "2", "--url", url, "--key", KEY)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["action"] == "enable"
            await alice.new_order("AAPL", "buy", 1, "90.00")
            halted = run_tickline("admin", "halt", "AAPL", "--url", url, "--key", KEY)
            assert halted.returncode == 0, halted.stderr
            with pytest.raises(OrderRejectedError) as h:
                await alice.new_order("AAPL", "buy", 1, "90.00")
            assert h.value.reason == RejectReason.INSTRUMENT_HALTED
            refused = run_tickline("admin", "resume", "AAPL", "--url", url, "--key", "nope")
            assert refused.returncode == 1 and "401" in refused.stderr
            assert run_tickline("admin", "resume", "AAPL", "--url", url,
                                "--key", KEY).returncode == 0
            await alice.new_order("AAPL", "buy", 1, "90.00")
    asyncio.run(scenario())


def test_no_admin_key_means_no_endpoint(tmp_path: Path) -> None:
    served = Served(tmp_path / "journal")
    try:
        status, body = post(served, "/admin/halt?symbol=AAPL", KEY)
        assert status == 404 and "admin_key" in str(body["message"])
    finally:
        served.close()


def test_account_commands_show_and_cancel_orders_and_replay_reports(server: Served) -> None:
    port = str(server.port)
    common = ("--key", "alice-key", "--port", port)

    async def place() -> None:
        async with await Client.connect(HOST, server.port, "alice-key") as alice:
            await alice.new_order("AAPL", "buy", 3, "90.00", client_order_id="a1")
            await alice.new_order("MSFT", "sell", 2, "60.00")
    asyncio.run(place())
    listed = run_tickline("account", "open-orders", *common)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["symbol"], r["status"], r["leaves"]) for r in rows] == [
        ("AAPL", "new", 3), ("MSFT", "new", 2)]
    one = run_tickline("account", "status", "AAPL", "--client-order-id", "a1", *common)
    assert json.loads(one.stdout)["order_id"] == rows[0]["order_id"]
    missing = run_tickline("account", "status", "AAPL", "999999", *common)
    assert missing.returncode == 1 and "UNKNOWN_ORDER" in missing.stderr
    cancelled = run_tickline("account", "mass-cancel", "MSFT", *common)
    assert cancelled.stdout.strip() == "cancelled 1 orders"
    reports = run_tickline("account", "reports", "--resume-from", "1", *common)
    kinds = [json.loads(line)[0] for line in reports.stdout.splitlines()]
    assert kinds == ["OrderAccepted", "OrderCancelled"]  # reports 2 and 3 of alice
