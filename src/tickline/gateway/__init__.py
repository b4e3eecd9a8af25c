"""tickline.gateway: the network edges of the exchange.

* :mod:`~tickline.gateway.protocol` — the binary order-entry wire format (length-prefixed,
  typed MessagePack frames);
* :mod:`~tickline.gateway.binary` — the binary order-entry server: sessions, logon by account
  key, rate and in-flight limits, execution reports (one connection's protocol in
  :mod:`~tickline.gateway.binary_session`);
* :mod:`~tickline.gateway.http` — HTTP (``/metrics``, ``/health``, ``/book/<symbol>``,
  ``/stats.json``), the live dashboard page and its WebSocket feed, on one port.

Gateways decode and check input at the edge and hand typed commands to
:class:`tickline.exchange.Exchange`; they never touch the engine's state directly.
"""
