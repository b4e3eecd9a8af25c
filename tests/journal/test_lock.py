"""One writer per journal directory (issue 14, item 1): a second writer — in this process,
in another process, or a second ``tickline serve`` — fails with a typed error naming the
directory and the holder's pid and changes nothing; readers (replay, verify) work beside a
live writer and never cut its tail; the lock goes with the writer, even a SIGKILLed one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.journal.conftest import SMALL, Mix, write_journal
from tests.served import Served, run_tickline, serve_argv
from tickline.journal import (
    Journal,
    JournalLocked,
    iter_commands,
    lock_holder,
    recover,
    replay,
    verify,
)
from tickline.journal.format import list_segments
from tickline.matching import EngineConfig

_HOLDER = """
import sys
from tickline.journal import Journal
j = Journal.open(sys.argv[1], durability="none", segment_bytes=64 << 10)
print("ready", flush=True)
sys.stdin.read()  # hold the journal until the test closes our stdin
j.close()
print("closed", flush=True)
"""


def _hold(directory: Path) -> subprocess.Popen[str]:
    """Another process holding ``directory`` open for writing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    return proc


def _reap(proc: subprocess.Popen[str]) -> int:
    """Kill ``proc`` if it still runs, close its pipes; its exit code."""
    if proc.poll() is None:
        proc.kill()
    code = proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    return code


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path, mix: Mix) -> None:
    write_journal(tmp_path, mix, n=500)
    with Journal.open(tmp_path, segment_bytes=SMALL) as first:
        assert lock_holder(tmp_path) == os.getpid()
        before = _files(tmp_path)
        with pytest.raises(JournalLocked) as info:
            Journal.open(tmp_path, segment_bytes=SMALL)
        assert info.value.directory == tmp_path and info.value.pid == os.getpid()
        assert str(info.value).startswith(
            f"journal directory {tmp_path} is locked by another writer (pid {os.getpid()})")
        with pytest.raises(JournalLocked):
            recover(tmp_path)  # recovery may truncate: it is a writer too
        assert _files(tmp_path) == before  # the refused writers changed nothing
        first.append_many(mix.commands[500:600])
        first.commit()
    assert lock_holder(tmp_path) is None  # close clears the pid and drops the lock
    with Journal.open(tmp_path, segment_bytes=SMALL) as again:
        assert again.last_seq == mix.commands[599].seq


def test_another_process_holds_the_lock_until_it_closes_or_dies(tmp_path: Path,
                                                                mix: Mix) -> None:
    write_journal(tmp_path, mix, n=300)
    holder = _hold(tmp_path)
    try:
        with pytest.raises(JournalLocked, match=rf"\(pid {holder.pid}\)") as info:
            Journal.open(tmp_path)
        assert info.value.pid == holder.pid
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()  # a clean close releases the lock
        assert holder.stdout.readline() == "closed\n"
        assert holder.wait(10) == 0
    finally:
        _reap(holder)
    Journal.open(tmp_path).close()
    killed = _hold(tmp_path)
    killed.send_signal(signal.SIGKILL)  # a dead holder leaves its pid, not its lock
    assert _reap(killed) == -signal.SIGKILL
    assert lock_holder(tmp_path) == killed.pid
    with Journal.open(tmp_path) as j:
        assert j.last_seq == mix.commands[299].seq
        assert lock_holder(tmp_path) == os.getpid()


def test_readers_beside_a_live_writer_never_cut_its_torn_tail(tmp_path: Path,
                                                             mix: Mix) -> None:
    """A reader must not "repair" what a writer is still writing: replay stops at the valid
    prefix, verify reports, recovery is refused; the bytes stay where they are."""
    write_journal(tmp_path, mix, n=400)
    _idx, seg = list_segments(tmp_path)[-1]
    holder = _hold(tmp_path)
    try:
        end = seg.read_bytes().rstrip(b"\0")
        with open(seg, "r+b") as f:  # a record half-copied into the tail
            f.seek(len(end) + 64)
            f.write(b"\x99" * 40)
        torn = seg.read_bytes()
        engine, report = replay(tmp_path)
        assert engine.last_seq == mix.commands[399].seq
        assert report.truncated_bytes == 0 and not report.quarantined
        check = verify(tmp_path)
        assert any(f"being written by pid {holder.pid}" in w for w in check.warnings)
        assert not check.ok  # the garbage is still reported, after the re-reads
        with pytest.raises(JournalLocked):
            recover(tmp_path)
        assert seg.read_bytes() == torn
        assert not (tmp_path / "quarantine").exists()
    finally:
        _reap(holder)
    _engine, rec = recover(tmp_path)  # the writer is gone: now recovery may cut
    assert rec.truncated and rec.last_seq == mix.commands[399].seq


def test_a_second_tickline_serve_on_the_same_journal_exits_1(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    first = Served(journal)
    try:
        assert lock_holder(journal) == first.proc.pid
        second = subprocess.run(serve_argv(journal), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 1, (second.stdout, second.stderr)
        assert (f"error: journal directory {journal} is locked by another writer "
                f"(pid {first.proc.pid})") in second.stderr
        assert "Traceback" not in second.stderr + second.stdout
        assert "READY" not in second.stdout
        assert first.get_json("/health")["status"] == "ok"  # the first one is unharmed

        # read-only tools work beside it
        out = tmp_path / "replay.json"
        replayed = run_tickline("replay", str(journal), "--json", str(out))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert json.loads(out.read_text())["last_sequence"] == 0
        verified = run_tickline("journal", "verify", str(journal))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "OK" in verified.stdout and f"pid {first.proc.pid}" in verified.stdout
        assert first.terminate() == 0
    finally:
        first.close()
    assert lock_holder(journal) is None
    third = Served(journal)  # after the first stopped, a new one starts
    try:
        assert third.get_json("/health")["status"] == "ok"
        assert third.terminate() == 0
    finally:
        third.close()


def test_the_exchange_takes_the_lock_before_recovery(tmp_path: Path, mix: Mix) -> None:
    """The exchange would otherwise recover (and truncate) a directory another process is
    writing before failing to open it."""
    from tickline.exchange import Exchange

    write_journal(tmp_path, mix, n=200)
    with Journal.open(tmp_path, segment_bytes=SMALL, instruments=mix.instruments,
                      config=EngineConfig()):
        before = _files(tmp_path)
        with pytest.raises(JournalLocked):
            Exchange(mix.instruments, journal_dir=tmp_path)
        assert _files(tmp_path) == before
    ex = Exchange(mix.instruments, journal_dir=tmp_path)
    try:
        assert ex.engine.last_seq == mix.commands[199].seq
        assert [c.seq for c in iter_commands(tmp_path)][-1] == mix.commands[199].seq
    finally:
        ex.close()
    assert lock_holder(tmp_path) is None
