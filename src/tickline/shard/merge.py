"""One broadcast command's events from several shards, as one command's events.

A ``TimeTick``, ``SetAccountStatus``, all-symbol ``MassCancel`` or a ``CancelOrders`` spanning
shards runs on each shard involved; each shard ends its events with its own summary
(``MassCancelled`` / ``AccountStatusChanged``). The merge keeps every other event, shard by
shard (shard 0 first), and ends with one summary whose count is the sum.
"""

from __future__ import annotations

import msgspec

from tickline.matching import Event
from tickline.matching.events import AccountStatusChanged, MassCancelled

__all__ = ["merge_events"]


def merge_events(parts: list[list[Event]]) -> list[Event]:
    if len(parts) == 1:
        return parts[0]
    body: list[Event] = []
    last: MassCancelled | AccountStatusChanged | None = None
    total = 0
    for events in parts:
        for ev in events:
            if type(ev) is MassCancelled:
                last = ev
                total += ev.count
            elif type(ev) is AccountStatusChanged:
                last = ev
                total += ev.cancelled
            else:
                body.append(ev)
    if type(last) is MassCancelled:
        body.append(msgspec.structs.replace(last, count=total))
    elif type(last) is AccountStatusChanged:
        body.append(msgspec.structs.replace(last, cancelled=total))
    return body
