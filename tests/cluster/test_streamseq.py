"""The follower's stream sequence comes from the reply subject like ``Msg.metadata``'s."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from tickline.cluster.jetstream import stream_seq

V1 = "$JS.ACK.TL_IN_0.cons123.1.4567.4560.1733230000000000000.3"
V2 = "$JS.ACK._.ACCHASH.TL_OUT_0.cons123.2.98765.98000.1733230000000000000.0.tok"
V2_11 = "$JS.ACK.dom.ACCHASH.TL_OUT_0.cons123.2.42.40.1733230000000000000.0"


@pytest.mark.parametrize("reply", [V1, V2, V2_11])
def test_stream_seq_is_the_metadata_stream_sequence(reply: str) -> None:
    msg = Msg(None, subject="tickline.in.0", reply=reply, data=b"")  # type: ignore[arg-type]
    assert stream_seq(reply) == msg.metadata.sequence.stream > 0


@pytest.mark.parametrize("reply", [None, "", "_INBOX.abc.def", "$JS.ACK.too.short",
                                   "$JS.FC.TL_IN_0.x.1.2.3.4.5", "$JS.ACK.s.c.1.x.2.3.4",
                                   "$JS.ACK.a.b.c.d.e.f.g.h.i.j"])
def test_not_a_stream_message_is_zero(reply: str | None) -> None:
    assert stream_seq(reply) == 0
