"""What travels on NATS in cluster mode (msgspec MessagePack, arrays).

* :class:`Logged` — one message of a shard's input stream, as a gateway published it: a
  *batch* of commands (whatever the gateway took for that shard in one event-loop turn), the
  engine time they need (``ts``, the gateway's clock at publish; the replica makes it strictly
  increasing command by command, deterministically), and who is waiting for them (``gateway``
  id; the commands' tickets are ``ticket``, ``ticket + 1``, ...). One message per batch, not
  per command: NATS, JetStream, the engines' consumers and the acknowledgement path pay their
  per-message cost once per batch. Published with ``Nats-Msg-Id: <gateway>:<ticket>`` (the
  first ticket), so a re-publish (the same bytes, after a loss) is dropped by JetStream's
  duplicate window. The command's sequence number is *not* the stream sequence: it is the
  running count of commands in the stream up to and including it (see
  :class:`~tickline.cluster.replica.Replica`), a function of the log alone.
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
           "decode_output_rows", "encode"]


class Logged(msgspec.Struct, array_like=True, gc=False):
    gateway: str
    ticket: int
    """The first command's ticket; command ``i`` of ``cmds`` has ticket ``ticket + i``."""
    ts: int
    cmds: list[Command]


class Done(msgspec.Struct, array_like=True, gc=False):
    """One processed command: ``cmd`` carries its ``seq`` (command sequence number) and
    ``ts``; ``ticket`` is its own ticket (not its batch's first)."""

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
    """The last command sequence number applied."""
    last_ts: int
    out_seq: int
    """The output stream's last sequence when the snapshot was taken (0: unknown)."""
    engine: EngineSnapshot
    in_seq: int = 0
    """The last input stream sequence applied (the tail starts after it; 0: ``seq``, as
    written before commands were batched, when the two were equal)."""


_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
decode_logged = msgspec.msgpack.Decoder(Logged).decode
decode_output = msgspec.msgpack.Decoder(Output).decode
decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
decode_output_rows = msgspec.msgpack.Decoder(
    tuple[int, int, list[tuple[str, int, Command, list[Event]]]]).decode
"""An :class:`Output`'s bytes as ``(epoch, shard, [(gateway, ticket, cmd, events), ...])``:
the same message (the structs are arrays), decoded into tuples for the gateway's release
(:mod:`tickline.cluster.release`): measured ~0.2 µs per command cheaper to decode than the
structs, and an index instead of a generic attribute lookup per field in compiled code."""
