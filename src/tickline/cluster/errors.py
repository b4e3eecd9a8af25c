"""The cluster gateway's refusal, importable without the ``cluster`` extra (no NATS client):
an :class:`~tickline.exchange.ExchangeUnavailable`, which every order-entry gateway answers
with its ``reason`` (``CLUSTER_UNAVAILABLE``, 412)."""

from __future__ import annotations

from tickline.exchange import ExchangeUnavailable
from tickline.matching import RejectReason

__all__ = ["ClusterUnavailable"]


class ClusterUnavailable(ExchangeUnavailable):
    """No engine can take the command now; nothing was logged. ``reason`` is the reject
    code the gateway answers with (``CLUSTER_UNAVAILABLE`` = 412), ``str()`` the why."""

    reason = int(RejectReason.CLUSTER_UNAVAILABLE)
