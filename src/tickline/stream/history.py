"""Report history: each account's most recent execution reports, for session resume.

:class:`ReportHistory` keeps each account's most recent reports (a bounded deque per
account, ``per_account`` deep): most reconnects are served from it. Older reports are
rebuilt from the journal (:func:`tickline.resume.replay_reports`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import islice
from typing import Any

from tickline.stream.reports import ExecReport

__all__ = ["ReportHistory"]


class ReportHistory:
    """The most recent ``per_account`` reports of every account, in report order. Single
    writer: the exchange loop (:meth:`record` per command). O(1) per report; memory at most
    ``per_account`` reports per account that ever had one."""

    def __init__(self, per_account: int = 4096) -> None:
        if per_account < 0:
            raise ValueError(f"per_account must be >= 0, got {per_account}")
        self.per_account = per_account
        self._recent: dict[int, deque[ExecReport]] = {}

    def record(self, reports: Sequence[ExecReport]) -> None:
        """Keep ``reports`` (one command's, in report order)."""
        if not self.per_account:
            return
        recent: dict[Any, deque[ExecReport]] = self._recent
        rs: Sequence[Any] = reports  # (Any: the account object as it is, compiled; no
        for r in rs:                 # runtime cast() call interpreted)
            account = r.account
            q = recent.get(account)
            if q is None:
                q = recent[account] = deque(maxlen=self.per_account)
            q.append(r)

    def after(self, account: int, after: int, upto: int) -> list[ExecReport] | None:
        """The account's reports numbered ``after+1 .. upto`` if memory still holds all of
        them, else None (go to the journal). O(returned)."""
        if upto <= after:
            return []
        q = self._recent.get(account)
        if not q or q[0].seq > after + 1 or q[-1].seq < upto:
            return None
        start = after + 1 - q[0].seq
        return list(islice(q, start, start + (upto - after)))  # deque indexing is O(n)
