"""FIX ExecIDs (17) never repeat, also for rejects without a report number (review item 5):
over a real socket, orders the exchange answers STALE_ORDER (410, report seq 0) each get an
ExecID of their own, distinct from every numbered report's."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.fix.harness import FixServer, fix_config

NOW = "20260101-00:00:00"


def order(clid: str) -> list[tuple[int, str | int]]:
    return [(11, clid), (55, "AAPL"), (54, 1), (60, NOW), (38, "1"), (40, 2), (44, "90.00")]


def test_unnumbered_rejects_get_unique_exec_ids(tmp_path: Path) -> None:
    cfg = fix_config(tmp_path / "j")
    cfg.deadlines.max_queue_ms = 1e-6  # 1 ns: every new order waits longer: STALE_ORDER
    with FixServer(tmp_path, cfg) as srv, srv.client("ALICE") as c:
        ids = []
        for i in range(5):
            c.send("D", order(f"s{i}"))
            er = c.expect("8")
            assert (er.get(150), er.get(11)) == ("8", f"s{i}"), er
            assert "max_queue_ms" in (er.get(58) or ""), er  # STALE_ORDER (410)
            ids.append(er.get(17))
        assert len(set(ids)) == len(ids), ids
        assert all(i.startswith("R") for i in ids), ids
        # a numbered report keeps <account>-<seq>, never equal to an unnumbered one's
        srv.call(lambda: setattr(srv.server.exchange, "max_queue_ns", 0))
        c.send("D", order("ok"))
        er = c.expect("8")
        assert er.get(150) == "0" and er.get(17) not in ids and "-" in er.get(17), er


def test_order_status_exec_ids_do_not_repeat_across_sessions(tmp_path: Path) -> None:
    """An order status answer (150=I) has no report number either: its ExecID must differ
    from every earlier one, also after a reconnect (a new session object)."""
    with FixServer(tmp_path) as srv:
        ids = []
        for _ in range(2):
            with srv.client("ALICE") as c:
                for _ in range(2):
                    c.send("H", [(11, "nope"), (55, "AAPL"), (54, 1)])
                    er = c.expect("8")
                    assert er.get(150) == "I", er
                    ids.append(er.get(17))
                c.send("5")
                c.expect("5")
                assert c.closed_by_peer()
        assert len(set(ids)) == 4, ids
