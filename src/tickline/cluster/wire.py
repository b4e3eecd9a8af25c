"""What travels on NATS in cluster mode (msgspec MessagePack, arrays).

* :class:`Logged` — one command in a shard's input stream, as a gateway published it: the
  command, the engine time it needs (``ts``, the gateway's clock at publish; the replica makes
  it strictly increasing in stream order, deterministically), and who is waiting for it
  (``gateway`` id and ``ticket``). The stream sequence is the command's sequence number.
  Published with ``Nats-Msg-Id: <gateway>:<ticket>``, so a re-publish (a retry after a lost
  acknowledgement) is dropped by JetStream's duplicate window.
* :class:`Output` — what an engine leader publishes per natural batch on the shard's output
  stream: the leader's ``epoch`` (its leadership revision, fencing a stale leader) and each
  command as sequenced (``seq``, ``ts`` stamped) with its engine events. Gateways build the
  execution reports from the events with their own :class:`~tickline.stream.ReportBuilder`
  (deterministic: the same numbers as the engine's, which snapshots carry).
* :class:`Snapshot` — a replica's state at input sequence ``seq`` (engine snapshot with the
  report builder's state attached, and the last engine time).
"""

from __future__ import annotations

import msgspec

from tickline.matching import Command, Event
from tickline.matching.engine_types import EngineSnapshot

__all__ = ["Done", "Logged", "Output", "Snapshot", "decode_logged", "decode_output",
           "encode"]


class Logged(msgspec.Struct, array_like=True, gc=False):
    gateway: str
    ticket: int
    ts: int
    cmd: Command


class Done(msgspec.Struct, array_like=True, gc=False):
    """One processed command: ``cmd`` carries its ``seq`` (stream sequence) and ``ts``."""

    gateway: str
    ticket: int
    cmd: Command
    events: list[Event]


class Output(msgspec.Struct, array_like=True, gc=False):
    epoch: int
    shard: int
    done: list[Done]


class Snapshot(msgspec.Struct, array_like=True):
    shard: int
    seq: int
    last_ts: int
    out_seq: int
    """The output stream's last sequence when the snapshot was taken (0: unknown)."""
    engine: EngineSnapshot


_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
decode_logged = msgspec.msgpack.Decoder(Logged).decode
decode_output = msgspec.msgpack.Decoder(Output).decode
decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
