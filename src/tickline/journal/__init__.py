"""tickline.journal: the memory-mapped segmented journal, snapshots, recovery and replay.

Every accepted command is framed (length, CRC32C, sequence number, type; see
:mod:`tickline.journal.format` for the byte layout) and appended in batches to fixed-size,
pre-allocated, memory-mapped segment files; :meth:`Journal.commit` ends a batch and applies
the durability policy (``none`` / ``batch`` / ``interval``) before the batch is acknowledged.
:func:`recover` rebuilds a :class:`~tickline.matching.MatchingEngine` from the newest valid
snapshot plus the journal after it, truncating (and reporting) a torn or corrupt tail.
One writer per directory: :meth:`Journal.open` and :func:`recover` hold an OS lock on
``journal.lock`` (:mod:`tickline.journal.lock`); readers (replay, verify, dump) never do.

>>> from tickline.journal import Journal, recover  # doctest: +SKIP
>>> j = Journal.open(path, durability="batch", instruments=instruments)  # doctest: +SKIP
>>> for cmd in batch: j.append_command(cmd)  # doctest: +SKIP
>>> j.commit()  # on disk: now acknowledge the batch  # doctest: +SKIP
>>> engine, report = recover(path)  # doctest: +SKIP
"""

from tickline.journal.format import (
    RECORD_COMMAND,
    RECORD_SEAL,
    JournalCorruptError,
    JournalError,
)
from tickline.journal.lock import DirectoryLock, JournalLocked, lock_holder
from tickline.journal.recovery import (
    Divergence,
    Follower,
    Record,
    RecoveryReport,
    VerifyReport,
    compare_replays,
    iter_commands,
    iter_records,
    recover,
    replay,
    replay_events,
    verify,
)
from tickline.journal.snapshot import (
    JournalMeta,
    SnapshotError,
    list_snapshots,
    read_meta,
    read_snapshot,
)
from tickline.journal.writer import Durability, Journal, TailRepair

__all__ = [
    "RECORD_COMMAND", "RECORD_SEAL", "DirectoryLock", "Divergence", "Durability", "Follower",
    "Journal",
    "JournalCorruptError", "JournalError", "JournalLocked", "JournalMeta", "Record",
    "RecoveryReport", "SnapshotError", "TailRepair", "VerifyReport", "compare_replays",
    "iter_commands", "iter_records", "list_snapshots", "lock_holder", "read_meta",
    "read_snapshot", "recover", "replay", "replay_events", "verify",
]
