"""Run in a child process by tests/build/test_build.py: a fixed stream (the mix with stops
and icebergs) through the engine; print the build and a hash of every byte that crosses the
journal or the wire: each command and each event msgpack-encoded as the journal writes them,
binary-protocol frames of the new orders, and the encoded engine snapshot."""

from __future__ import annotations

import hashlib
import json

import msgspec

from tickline._build import describe
from tickline.bench.workload import exchange_core_mix
from tickline.gateway.protocol import encode_frame
from tickline.journal.snapshot import encode_snapshot
from tickline.matching import NewOrder


def main() -> None:
    work = exchange_core_mix(3_000, seed=3, stops=0.05, icebergs=0.05)
    engine = work.engine()
    encode = msgspec.msgpack.Encoder().encode
    h = hashlib.sha256()
    for cmd in [*work.prefill, *work.commands]:
        h.update(encode(cmd))
        for event in engine.process(cmd):
            h.update(encode(event))
    h.update(encode_snapshot(engine.snapshot()))
    frames = hashlib.sha256()
    for cmd in work.commands[:200]:
        if type(cmd) is NewOrder:
            frames.update(encode_frame(cmd))
    print(json.dumps({"build": describe(), "journal": h.hexdigest(),
                      "frames": frames.hexdigest(), "digest": engine.digest()}))


if __name__ == "__main__":
    main()
