"""JetStream publishes that wait for their acknowledgement, for the engine leader's output
(one publish in flight at a time, fenced by ``Nats-Expected-Last-Sequence``).

What ``JetStreamContext.publish`` does — publish with a reply subject, wait for JetStream's
answer, raise its error — without what it costs per message on top of the publish: a NUID
and ``os.urandom`` for the reply token, a future with a done callback and
``asyncio.wait_for`` (a second future, a timer and two callbacks), and the answer turned
into a ``PubAck`` dataclass through ``dataclasses.fields``. Here: one reply subscription
(``<inbox>.*``) made at start, a counter as the token, one future and one timer per
publish, and the stream sequence read from the JSON answer. The message, its headers and
the errors are those of ``JetStreamContext.publish``: an error answer raises the same
``nats.js.errors.APIError`` (with its ``err_code``: 10071 is a wrong last sequence, the
fence), no stream raises ``NoStreamResponseError``, no answer in time
``nats.errors.TimeoutError``.
"""

from __future__ import annotations

import asyncio
import json

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["AckedPublisher"]

_EXPECTED_STREAM = "Nats-Expected-Stream"
_NO_RESPONDERS = "503"


def _expire(fut: asyncio.Future[int]) -> None:
    if not fut.done():
        fut.set_exception(nats.errors.TimeoutError())


class AckedPublisher:
    """Publishes to JetStream on ``nc`` and returns the stored message's stream sequence.
    :meth:`start` subscribes the reply subject first; single writer (one event loop)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[int]] = {}
        self._next = 0

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        await self.nc.subscribe(self._prefix + "*", cb=self._on_answer)

    async def publish(self, subject: str, payload: bytes, *, stream: str,
                      headers: dict[str, str], timeout: float) -> int:
        """Publish ``payload`` with ``headers`` (and ``Nats-Expected-Stream: stream``, as
        ``JetStreamContext.publish(stream=...)`` adds it) and wait up to ``timeout`` s for
        JetStream's acknowledgement: the stream sequence it was stored at."""
        assert self._prefix, "start() first"
        self._next += 1
        token = str(self._next)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._pending[token] = fut
        timer = loop.call_later(timeout, _expire, fut)
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token,
                                  headers={**headers, _EXPECTED_STREAM: stream})
            return await fut
        finally:
            timer.cancel()
            del self._pending[token]

    async def _on_answer(self, msg: Msg) -> None:
        fut = self._pending.get(msg.subject[len(self._prefix):])
        if fut is None or fut.done():
            return  # timed out already
        if not msg.data:  # a status message: no stream listens on the subject
            status = (msg.headers or {}).get("Status", "")
            fut.set_exception(NoStreamResponseError() if status == _NO_RESPONDERS
                              else APIError(description=f"status {status}"))
            return
        try:
            resp = json.loads(msg.data)
            err = resp.get("error")
            if err is not None:
                APIError.from_error(err)  # raises the matching APIError subclass
            fut.set_result(int(resp["seq"]))
        except Exception as e:  # an error answer, or one that is not JSON
            fut.set_exception(e)
