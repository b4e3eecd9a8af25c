"""A child appending under load is killed with SIGKILL at random points, many times; after
each kill, recovery yields exactly the acknowledged records (and possibly some of the
unacknowledged ones), as a gap-free prefix, and the child's successor continues from it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tickline.journal import iter_commands, recover, replay, verify

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 25


def _start(directory: Path, seed: int) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(CHILD), str(directory), str(seed)],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("ready "), f"child failed to start: {line!r}"
    return proc, int(line.split()[1])


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    rng = random.Random(20261125)
    recovered = 0
    truncations = 0
    total_acks = 0
    for round_ in range(KILLS):
        proc, start_seq = _start(directory, seed=round_)
        assert start_seq == recovered  # the successor resumes exactly at the valid prefix
        time.sleep(rng.uniform(0.01, 0.3))
        proc.send_signal(signal.SIGKILL)
        assert proc.stdout is not None
        acks = [int(x) for x in proc.stdout.read().split()]
        proc.stdout.close()
        assert proc.wait() == -signal.SIGKILL
        total_acks += len(acks)
        last_ack = max(acks, default=start_seq)

        engine, report = recover(directory)
        seqs = [cmd.seq for cmd in iter_commands(directory)]
        assert seqs == list(range(1, len(seqs) + 1)), "lost, duplicated or reordered records"
        assert len(seqs) >= last_ack, f"round {round_}: acked {last_ack}, recovered {len(seqs)}"
        assert report.last_seq == len(seqs) == engine.last_seq
        truncations += report.truncated
        full, _ = replay(directory, use_snapshot=False)
        assert engine.digest() == full.digest()  # snapshot + tail == every record replayed
        check = verify(directory)
        assert check.ok, check.problems
        recovered = len(seqs)
    assert total_acks > KILLS  # the children were really appending when killed
    assert recovered > 1000
