"""The messages between the gateway process and a shard process (MessagePack, msgspec).

Gateway → shard: one frame per batch, a list of sequenced commands (the journal's encoding).
Shard → gateway: :class:`Hello` once recovered (its last journaled seq, and the events of
the commands journaled after the gateway's last acknowledged one — the in-flight commands of
a shard that died after its commit), then one :class:`Done` per group of batches, sent only
after the group is committed to the shard's journal (journal before acknowledge).
"""

from __future__ import annotations

import msgspec

from tickline.matching import Command, Event

__all__ = ["Done", "Hello", "Reply", "State", "decode_commands", "decode_reply", "encode"]

Result = tuple[int, list[Event]]


class Hello(msgspec.Struct, tag="hello"):
    shard: int
    pid: int
    last_seq: int
    next_expiry: int | None
    late: list[Result]
    records_replayed: int = 0


class Done(msgspec.Struct, tag="done"):
    results: list[Result]
    next_expiry: int | None


class State(msgspec.Struct, tag="state"):
    """The answer to an empty command frame: the shard engine's state digests (tests,
    ``/health``), taken between batches."""

    shard: int
    last_seq: int
    digest: str
    books: dict[str, str]
    next_order_id: int
    next_trade_id: int


Reply = Hello | Done | State

encode = msgspec.msgpack.Encoder().encode
decode_commands = msgspec.msgpack.Decoder(list[Command]).decode
decode_reply = msgspec.msgpack.Decoder(Reply).decode
