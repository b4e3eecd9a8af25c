"""The cluster gateway's refusal, importable without the ``cluster`` extra (no NATS client):
every order-entry gateway catches it to answer ``CLUSTER_UNAVAILABLE`` (412) with its reason
instead of treating it as the :class:`~tickline.exchange.ExchangeStopped` it subclasses."""

from __future__ import annotations

from tickline.exchange import ExchangeStopped
from tickline.matching import RejectReason

__all__ = ["ClusterUnavailable"]


class ClusterUnavailable(ExchangeStopped):
    """No engine can take the command now; nothing was logged. ``reason`` is the reject
    code the gateway answers with (``CLUSTER_UNAVAILABLE`` = 412), ``str()`` the why."""

    reason = int(RejectReason.CLUSTER_UNAVAILABLE)
