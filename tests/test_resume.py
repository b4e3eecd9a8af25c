"""Session resume below the gateways: the report history, the journal replay of missed
reports (across snapshots and restarts), queries in sequence, deferred commands, drop copies."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tickline.exchange import Exchange
from tickline.matching import BUY, SELL, Cancel, Command, Event, Instrument, NewOrder
from tickline.resume import ResumeError, replay_reports
from tickline.stream import ExecReport, ReportRouter
from tickline.stream.history import ReportHistory

INSTRUMENTS = [Instrument(symbol="ABC")]
encode = msgspec.msgpack.encode


def flow(rng: random.Random, n: int) -> list[NewOrder]:
    return [NewOrder(account=rng.randint(1, 3), symbol="ABC", side=rng.choice([BUY, SELL]),
                     price=100 + rng.randint(-2, 2), quantity=rng.randint(1, 5))
            for _ in range(n)]


def run(ex: Exchange, cmds: list[NewOrder]) -> list[ExecReport]:
    """Submit and pump; every report built, in report order."""
    out: list[ExecReport] = []
    port = ex.router.attach(None, out.extend)  # a drop copy of everything
    for cmd in cmds:
        ex.submit(cmd)
    ex.pump()
    port.close()
    return out


def test_history_serves_recent_reports_and_says_when_it_cannot() -> None:
    h = ReportHistory(per_account=3)
    reports = [ExecReport(i, i, 7, 1, "ABC", i, "", BUY, 1, 1, 1) for i in range(1, 6)]
    h.record(reports)
    assert h.after(7, 2, 5) == reports[2:]
    assert h.after(7, 4, 5) == reports[4:]
    assert h.after(7, 5, 5) == []
    assert h.after(7, 1, 5) is None  # report 2 fell out of memory
    assert h.after(8, 0, 1) is None  # never seen
    with pytest.raises(ValueError, match="per_account must be >= 0, got -1"):
        ReportHistory(-1)


@pytest.mark.parametrize("snapshot_every", [0, 50])
def test_missed_reports_are_rebuilt_from_the_journal_exactly(tmp_path: Path,
                                                             snapshot_every: int) -> None:
    rng = random.Random(snapshot_every)
    ex = Exchange(INSTRUMENTS, journal_dir=tmp_path, durability="none",
                  snapshot_every=snapshot_every, report_history=0)
    live = run(ex, flow(rng, 400))
    ex.snapshot()
    live += run(ex, flow(rng, 100))
    last_seq = ex.engine.last_seq
    mine = {a: [r for r in live if r.account == a] for a in (1, 2, 3)}
    for account, reports in mine.items():
        n = len(reports)
        assert [r.seq for r in reports] == list(range(1, n + 1))
        for after in (0, 1, n // 3, n - 5, n):
            got = replay_reports(tmp_path, account, after, n, last_seq)
            assert [encode(r) for r in got] == [encode(r) for r in reports[after:]]
    ex.close()
    # After a restart the numbering continues where it stopped (restored from the journal),
    # and the missed reports are still there.
    again = Exchange(INSTRUMENTS, journal_dir=tmp_path, durability="none")
    assert again.reports.report_seqs() == {a: len(r) for a, r in mine.items()}
    later = run(again, flow(rng, 50))
    for account, reports in mine.items():
        theirs = [r for r in later if r.account == account]
        assert [r.seq for r in theirs] == list(range(len(reports) + 1,
                                                     len(reports) + 1 + len(theirs)))
    total = len(mine[1]) + len([r for r in later if r.account == 1])
    got = asyncio.run(again.resumer.missed(1, 0, total, again.engine.last_seq))
    assert [encode(r) for r in got] == [encode(r) for r in mine[1]
                                        + [r for r in later if r.account == 1]]
    assert again.resumer.from_journal == 1
    with pytest.raises(ResumeError, match=r"not 1\.\.99999"):
        replay_reports(tmp_path, 1, 0, 99_999, again.engine.last_seq)
    again.close()


def test_missed_reports_without_a_journal_come_from_memory_or_fail_clearly() -> None:
    ex = Exchange(INSTRUMENTS, report_history=10)
    reports = run(ex, flow(random.Random(3), 200))
    n = len([r for r in reports if r.account == 1])
    got = asyncio.run(ex.resumer.missed(1, n - 3, n, ex.engine.last_seq))
    assert [r.seq for r in got] == [n - 2, n - 1, n]
    with pytest.raises(ResumeError, match="no longer in memory and this server has no journal"):
        asyncio.run(ex.resumer.missed(1, 0, n, ex.engine.last_seq))
    with pytest.raises(ResumeError, match=f"resume_from={n + 1} but account 1's last report"):
        ex.resumer.check(1, n + 1, n)


def test_a_query_sees_everything_submitted_before_it_and_answers_after_its_release() -> None:
    """Queries in one batch with commands: each sees exactly the commands before it (the
    report builder's order state), and is answered after their replies, before later ones."""
    ex = Exchange(INSTRUMENTS)
    order: list[str] = []

    def reply(cmd: Command, _events: list[Event], _reports: list[ExecReport]) -> None:
        order.append(f"reply {cmd.seq}")

    def open_count() -> int:
        return len(ex.reports.open_orders(1))

    ex.query(open_count, lambda n: order.append(f"answer {n}"))
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=5), reply)
    ex.query(open_count, lambda n: order.append(f"answer {n}"))
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=99, quantity=5), reply)
    ex.query(open_count, lambda n: order.append(f"answer {n}"))
    ex.pump()  # one batch
    assert order == ["answer 0", "reply 1", "answer 1", "reply 2", "answer 2"]
    assert ex.engine.last_seq == 2  # queries are not sequenced or journaled
    ex.query(lambda: ex.engine.last_seq, lambda n: order.append(f"alone {n}"))
    ex.pump()
    assert order[-1] == "alone 2"


def test_a_deferred_command_is_built_from_the_state_when_it_is_sequenced() -> None:
    ex = Exchange(INSTRUMENTS)
    port = ex.router.attach(1, lambda _r: None)
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=100, quantity=5),
              origin=port)
    ex.submit(NewOrder(account=1, symbol="ABC", side=BUY, price=99, quantity=5),
              origin=port)

    def cancel_first() -> Command | None:
        live = sorted(oid for oid in port.orders if oid in ex.engine.orders)
        return Cancel(account=1, symbol="ABC", order_id=live[0]) if live else None

    ex.submit_deferred(cancel_first)  # both orders are matched by the time it is built
    ex.submit_deferred(lambda: None)  # nothing to do: nothing sequenced
    ex.pump()
    assert ex.engine.last_seq == 3
    assert sorted(ex.engine.orders) == [2]
    assert port.orders == {2}


def test_drop_copies_see_every_report_of_their_account() -> None:
    router = ReportRouter()
    session, copy1, copy2, everything = [], [], [], []  # type: ignore[var-annotated]
    p = router.attach(1, session.extend)
    router.attach(1, copy1.extend, drop_copy=True)
    router.attach(2, copy2.extend, drop_copy=True)
    router.attach(None, everything.extend)
    r1 = ExecReport(1, 1, 1, 1, "ABC", 5, "", BUY, 1, 1, 1)
    r2 = ExecReport(1, 1, 2, 1, "ABC", 6, "", BUY, 1, 1, 1)
    assert router.route([r1, r2], 1, p) == [r1]
    assert session == [] and copy1 == [r1] and copy2 == [r2] and everything == [r1, r2]


def test_a_journal_resume_runs_in_a_worker_process_and_its_errors_come_back(
        tmp_path: Path) -> None:
    """The replay is CPU-bound Python: it runs in a worker process (a thread would hold the
    GIL against the exchange loop). Same reports as the thread, errors typed, worker
    stopped by close."""
    ex = Exchange(INSTRUMENTS, journal_dir=tmp_path, durability="none", report_history=0)
    live = run(ex, flow(random.Random(11), 300))
    mine = [r for r in live if r.account == 2]
    n, last = len(mine), ex.engine.last_seq

    async def both() -> tuple[list[ExecReport], list[ExecReport], int]:
        by_process = await ex.resumer.missed(2, 3, n, last)
        assert ex.resumer._pool is not None
        worker_pid = await asyncio.get_running_loop().run_in_executor(ex.resumer._pool,
                                                                      os.getpid)
        ex.resumer.in_process = False
        by_thread = await ex.resumer.missed(2, 3, n, last)
        ex.resumer.in_process = True
        with pytest.raises(ResumeError, match=r"not 4\.\.99999"):
            await ex.resumer.missed(2, 3, 99_999, last)  # raised in the worker, typed here
        return by_process, by_thread, worker_pid

    by_process, by_thread, worker_pid = asyncio.run(both())
    assert worker_pid != os.getpid()
    assert [encode(r) for r in by_process] == [encode(r) for r in mine[3:]]
    assert [encode(r) for r in by_thread] == [encode(r) for r in mine[3:]]
    assert ex.resumer.from_journal == 2
    pool = ex.resumer._pool
    assert pool is not None
    workers = list(pool._processes.values())
    ex.close()
    assert ex.resumer._pool is None
    for process in workers:  # the executor's own thread reaps them: wait until it has
        assert process.pid is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _exists(process.pid):
            time.sleep(0.02)
        assert not _exists(process.pid), "the resume worker outlived Exchange.close()"


def _exists(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


_KILLED_PARENT = """
import asyncio, os, random, sys, time
sys.path.insert(0, {tests!r})
from test_resume import INSTRUMENTS, flow, run
from tickline.exchange import Exchange
ex = Exchange(INSTRUMENTS, journal_dir={journal!r}, durability="none", report_history=0)
n = len([r for r in run(ex, flow(random.Random(5), 200)) if r.account == 1])
asyncio.run(ex.resumer.missed(1, 0, n, ex.engine.last_seq))
print(next(iter(ex.resumer._pool._processes)), flush=True)
time.sleep(60)
"""


def test_the_resume_worker_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed server's resume worker must not live on (it would keep the server's
    stdout open, and a supervisor reading it until end-of-file would wait forever)."""
    code = _KILLED_PARENT.format(tests=str(Path(__file__).parent), journal=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _exists(worker)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _exists(worker):
            time.sleep(0.05)
        assert not _exists(worker), "the resume worker outlived its SIGKILLed server"
        assert parent.stdout.read() == ""  # end-of-file: nobody holds the pipe any more
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
