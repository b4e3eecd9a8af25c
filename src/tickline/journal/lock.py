"""One writer per journal directory, enforced by the operating system.

A writer (:meth:`~tickline.journal.Journal.open`, :func:`~tickline.journal.recover` when it
may truncate, and so ``tickline serve``) holds an exclusive ``fcntl.flock`` on
``<directory>/journal.lock`` for its whole life and writes its pid into the file. A second
writer fails at once with :class:`JournalLocked`, which names the directory and the holder's
pid, instead of silently interleaving its records with the first one's (two writers hand out
the same sequence numbers and order ids, and each overwrites the other's tail).

Why ``flock`` and not a pid file alone: the kernel drops the lock when the holder's last file
descriptor closes, which includes a SIGKILL or a crash, so a dead writer never leaves a stale
lock behind (the pid it wrote stays in the file, as information only). The descriptor is not
inherited by child processes (Python opens files non-inheritable).

Readers never take the lock: ``tickline replay``, ``tickline journal verify``/``dump`` and
:func:`~tickline.journal.replay` open the files read-only beside a running writer and never
modify them. :func:`lock_holder` reads the recorded pid without touching the lock (even a
momentary shared lock taken by a reader could make a writer starting at that instant fail).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from tickline.journal.format import JournalError

LOCK_NAME = "journal.lock"


class JournalLocked(JournalError):
    """Another process holds the writer lock of the journal directory.

    ``directory`` is the directory, ``pid`` the holder's pid as it recorded it (``None`` if it
    had not written it yet)."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process that has not written its pid"
        super().__init__(
            f"journal directory {directory} is locked by another writer ({holder}); "
            f"one writer per journal: stop it first (tickline replay and tickline journal "
            f"verify work beside it, read-only)")
        self.directory = directory
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    data = os.pread(fd, 64, 0)
    try:
        return int(data.split()[0]) if data.strip() else None
    except ValueError:
        return None


def lock_holder(directory: Path | str) -> int | None:
    """The pid recorded in ``journal.lock`` by the last writer of ``directory`` (it may have
    exited since: the lock itself is released by the kernel, the pid stays), or ``None``."""
    try:
        fd = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def writer_alive(directory: Path | str) -> int | None:
    """The pid of a live process recorded as the writer of ``directory``, or ``None``. Only a
    hint for readers (the pid may have been reused); the lock is what excludes writers."""
    pid = lock_holder(directory)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


class DirectoryLock:
    """The exclusive writer lock of one journal directory, held until :meth:`release`.

    Use :meth:`acquire`. Not reentrant: a second :meth:`acquire` of the same directory fails
    even in the same process (flock locks belong to the open file, not the process), which is
    what makes two writers in one process an error too. Pass the lock on instead
    (:meth:`Journal.open(lock=...) <tickline.journal.Journal.open>`).
    """

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd = fd

    @classmethod
    def acquire(cls, directory: Path | str) -> DirectoryLock:
        """Take the lock of ``directory`` (created if missing) without waiting, and record
        this process's pid in it. Raises :class:`JournalLocked` if another writer holds it,
        :class:`JournalError` if the lock file cannot be opened."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_NAME
        try:
            # no O_TRUNC: the file holds the current holder's pid until we own the lock
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot open the journal lock {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            pid = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise JournalLocked(directory, pid) from None
            raise JournalError(f"cannot lock {path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd >= 0

    def release(self) -> None:
        """Clear the recorded pid and drop the lock. Idempotent."""
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_NAME", "DirectoryLock", "JournalLocked", "lock_holder", "writer_alive"]
