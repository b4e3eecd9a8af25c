"""The WebSocket protocol's inbound side: typed request structs, decoding, typed errors.

Client frames are JSON objects tagged on ``op``, decoded straight into the structs below by
``msgspec`` (never ``eval``/pickle). :func:`decode_request` turns *every* input into either
a request struct or a :class:`WsError` -- nesting too deep for the decoder's recursion limit
included (``{"a":[{"a":[...`` a thousand levels deep is under 4 KiB) -- so a session never
sees an unhandled exception from what a client sent. The protocol itself is documented in
:mod:`tickline.gateway.http`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "CHANNELS",
    "MARKET_CHANNELS",
    "OP_NAMES",
    "POLICIES",
    "CancelOp",
    "LoginOp",
    "MassCancelOp",
    "NewOrderOp",
    "Op",
    "OpenOrdersOp",
    "OrderStatusOp",
    "PingOp",
    "ReplaceOp",
    "ReplayOp",
    "SubscribeOp",
    "UnsubscribeOp",
    "WsError",
    "decode_request",
]

MARKET_CHANNELS = ("depth", "trades", "bbo", "bars")
CHANNELS = (*MARKET_CHANNELS, "stats")
POLICIES = ("drop_oldest", "disconnect")
"""A subscription's slow-consumer policy, chosen by the client: ``drop_oldest`` (trades and
bars: drop the oldest and announce a ``gap``; depth: conflate, then resync with a fresh
snapshot) or ``disconnect`` (close the session as a slow consumer instead)."""

_Str64 = Annotated[str, msgspec.Meta(max_length=64)]
_Decimal = Annotated[str, msgspec.Meta(max_length=40)] | int


_Id = int | _Str64 | None
_Seq = Annotated[int, msgspec.Meta(ge=0)]


class SubscribeOp(msgspec.Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True):
    """``symbol`` may hold ``*`` wildcards (``"*"``: every symbol, ``"*-USD"``); ``policy``
    and ``buffer`` (messages, at most the server's capacity for the channel) choose how a
    slow reader is treated."""

    channels: Annotated[list[_Str64], msgspec.Meta(max_length=16)]
    symbol: _Str64 = ""
    policy: Literal["drop_oldest", "disconnect"] = "drop_oldest"
    buffer: Annotated[int, msgspec.Meta(ge=1)] | None = None


class UnsubscribeOp(msgspec.Struct, tag_field="op", tag="unsubscribe",
                    forbid_unknown_fields=True):
    symbol: _Str64 = ""
    channels: Annotated[list[_Str64], msgspec.Meta(max_length=16)] | None = None


class PingOp(msgspec.Struct, tag_field="op", tag="ping", forbid_unknown_fields=True):
    id: int | _Str64 | None = None


class LoginOp(msgspec.Struct, tag_field="op", tag="login", forbid_unknown_fields=True):
    """``resume_from=N``: first replay the account's reports numbered above ``N``;
    ``cancel_on_disconnect``: cancel this session's live orders when it ends."""

    key: Annotated[str, msgspec.Meta(max_length=256)]
    resume_from: _Seq | None = None
    cancel_on_disconnect: bool = False


class NewOrderOp(msgspec.Struct, tag_field="op", tag="new_order", forbid_unknown_fields=True):
    """``client_order_id`` is bounded by the frame size here; its configured limit
    (``limits.max_client_order_id_bytes``, in UTF-8 bytes) is checked by the session."""

    symbol: _Str64
    side: Literal["buy", "sell"]
    quantity: _Decimal
    price: _Decimal | None = None
    order_type: Literal["limit", "market", "stop", "stop_limit"] = "limit"
    tif: Literal["gtc", "ioc", "fok", "gtd"] = "gtc"
    client_order_id: str = ""
    post_only: bool = False
    expire_time: _Seq = 0
    stp: Literal["default", "cancel_newest", "cancel_oldest", "cancel_both", "off"] = "default"
    stop_price: _Decimal | None = None
    display_quantity: _Decimal | None = None


class CancelOp(msgspec.Struct, tag_field="op", tag="cancel", forbid_unknown_fields=True):
    symbol: _Str64
    order_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    client_order_id: str = ""


class ReplaceOp(msgspec.Struct, tag_field="op", tag="replace", forbid_unknown_fields=True):
    """Cancel/replace one of the account's live orders (by ``order_id`` or
    ``orig_client_order_id``): fields left out keep their value; ``quantity`` is the new
    total; ``client_order_id`` names the replaced order."""

    symbol: _Str64
    order_id: _Seq = 0
    orig_client_order_id: str = ""
    client_order_id: str = ""
    price: _Decimal | None = None
    quantity: _Decimal | None = None
    stop_price: _Decimal | None = None
    display_quantity: _Decimal | None = None


class OrderStatusOp(msgspec.Struct, tag_field="op", tag="order_status",
                    forbid_unknown_fields=True):
    order_id: _Seq = 0
    client_order_id: str = ""
    symbol: _Str64 = ""
    id: _Id = None


class OpenOrdersOp(msgspec.Struct, tag_field="op", tag="open_orders",
                   forbid_unknown_fields=True):
    symbol: _Str64 = ""
    id: _Id = None


class MassCancelOp(msgspec.Struct, tag_field="op", tag="mass_cancel",
                   forbid_unknown_fields=True):
    """Cancel every live order of the account (``symbol`` "" = every symbol; ``side``
    omitted = both)."""

    symbol: _Str64 = ""
    side: Literal["buy", "sell"] | None = None
    id: _Id = None


class ReplayOp(msgspec.Struct, tag_field="op", tag="replay", forbid_unknown_fields=True):
    """Gap recovery: the ``channel``'s messages ``from_seq..to_seq`` of ``symbol`` from the
    server's bounded history, or, when it no longer holds them all, a fresh snapshot."""

    channel: _Str64
    symbol: _Str64
    from_seq: _Seq = 0
    to_seq: _Seq = 0
    id: _Id = None


Op = (SubscribeOp | UnsubscribeOp | PingOp | LoginOp | NewOrderOp | CancelOp | ReplaceOp
      | OrderStatusOp | OpenOrdersOp | MassCancelOp | ReplayOp)
OP_NAMES = ("subscribe", "unsubscribe", "ping", "login", "new_order", "cancel", "replace",
            "order_status", "open_orders", "mass_cancel", "replay")


class _Envelope(msgspec.Struct):
    """Only to classify a failed decode: is ``op`` there, and is it a known one?"""

    op: str


_op_decoder = msgspec.json.Decoder(Op)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


class WsError(Exception):
    """A typed error for the client: ``code`` and a message naming the value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _too_deep() -> WsError:
    return WsError("invalid_json", "JSON nested too deeply (requests are at most 3 levels)")


def decode_request(raw: str) -> Op:
    """One request struct from one text frame, or :class:`WsError` (``invalid_json``,
    ``invalid_message`` or ``unknown_op``) whatever ``raw`` holds. O(len(raw))."""
    try:
        return _op_decoder.decode(raw)
    except RecursionError:
        raise _too_deep() from None
    except msgspec.DecodeError as exc:
        raise _classify(raw, exc) from None


def _classify(raw: str, exc: msgspec.DecodeError) -> WsError:
    if not isinstance(exc, msgspec.ValidationError):
        return WsError("invalid_json", f"not valid JSON: {exc}")
    try:
        env = _envelope_decoder.decode(raw)
    except RecursionError:
        return _too_deep()
    except msgspec.ValidationError:
        return WsError("invalid_message", f"a request is a JSON object with a string 'op': "
                                          f"{exc}")
    except msgspec.DecodeError as e:  # pragma: no cover - it decoded once already
        return WsError("invalid_json", f"not valid JSON: {e}")
    if env.op not in OP_NAMES:
        return WsError("unknown_op", f"unknown op {env.op[:64]!r}; expected one of "
                                     f"{', '.join(OP_NAMES)}")
    return WsError("invalid_message", f"invalid {env.op!r} request: {exc}")
