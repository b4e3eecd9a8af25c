"""FIX 4.4 tag=value framing, parsing, validation and encoding (no I/O).

* :class:`FixReader` splits a byte stream into messages. A message whose BodyLength does not
  lead to a ``10=nnn<SOH>`` trailer, or whose CheckSum is wrong, is **garbled**: the FIX
  session rules say to ignore it (no reject, MsgSeqNum not consumed), so it comes out as a
  :class:`Garbled` item and the reader resynchronises on the next ``8=FIX``.
* :func:`parse` turns one framed message into a :class:`FixMessage` (fields in wire order and
  the first value of each tag); :func:`validate` checks it against the generated FIX 4.4
  dictionary (:mod:`tickline.gateway.fix.spec`) and raises :class:`FieldError` carrying the
  SessionRejectReason (373) and RefTagID (371) of the session-level Reject to send.
* :class:`Encoder` builds outbound messages of one session: the constant header part
  (SenderCompID, TargetCompID) is pre-encoded once, each message is encoded once, BodyLength
  and CheckSum computed over the finished bytes.
"""

from __future__ import annotations

import calendar
import math
import re
import time
import zlib
from collections.abc import Callable, Iterable
from types import FunctionType
from typing import Final

from tickline.gateway.fix import spec

__all__ = ["SOH", "Encoder", "FieldError", "FixMessage", "FixReader", "Garbled",
           "byte_sum", "checksum", "frame_at", "parse", "parse_valid", "routine", "sending_time",
           "sending_time_certain", "sending_window", "validate"]


def _probe() -> None:
    """(A function: compiled by mypyc, it is a builtin, not a Python function.)"""


COMPILED: Final = not isinstance(_probe, FunctionType)
"""True in the compiled build (a few loops are written differently for each build)."""

SOH = b"\x01"
BEGIN = b"8=FIX.4.4\x01"
MAX_BODY = 1 << 16  # bytes; a larger BodyLength is garbled (bounds what one peer can buffer)

# SessionRejectReason (373) values used here (FIX 4.4)
INVALID_TAG = 0
REQUIRED_MISSING = 1
NOT_DEFINED_FOR_TYPE = 2
UNDEFINED_TAG = 3
NO_VALUE = 4
BAD_VALUE = 5
BAD_FORMAT = 6
SIGNATURE = 8
COMPID = 9
SENDING_TIME = 10
INVALID_MSGTYPE = 11
REPEATED_TAG = 13
OUT_OF_ORDER = 14
GROUP_COUNT = 16


class Garbled:
    """A message that cannot be trusted (framing or checksum): ignored by the session."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Garbled({self.reason!r})"


class FieldError(Exception):
    """A framed message that breaks the dictionary: answer with Reject (35=3)."""

    def __init__(self, reason: int, tag: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.tag = tag
        self.text = text


class FixMessage:
    """One parsed message: ``fields`` in wire order (tag, value), ``values`` the first value
    of each tag, ``raw`` the bytes as received. A message from :func:`parse_valid` has no
    repeated tag, so its ``fields`` are ``values`` in insertion (wire) order, built only when
    asked for."""

    __slots__ = ("_fields", "msg_type", "raw", "values")

    def __init__(self, fields: list[tuple[int, str]] | None, raw: bytes,
                 values: dict[int, str] | None = None) -> None:
        self._fields = fields
        self.raw = raw
        if values is None:
            values = dict(reversed(fields or []))  # the first value of a repeated tag
        self.values = values
        self.msg_type = values.get(35, "")

    @property
    def fields(self) -> list[tuple[int, str]]:
        fields = self._fields
        if fields is None:
            fields = self._fields = list(self.values.items())
        return fields

    def get(self, tag: int, default: str = "") -> str:
        return self.values.get(tag, default)

    def __repr__(self) -> str:
        return f"FixMessage({self.raw.replace(SOH, b'|').decode('latin-1')!r})"


def byte_sum(data: bytes | bytearray | memoryview) -> int:
    """The sum of the bytes of ``data``, computed in C: the low 16 bits of Adler-32 are
    ``1 + sum`` modulo 65521, exact while the sum stays below 65521, i.e. for up to 256
    bytes at a time (256 x 255 = 65,280). About 8x faster than ``sum(data)`` on a typical
    150-byte message."""
    n = len(data)
    if n <= 256:
        return (zlib.adler32(data) & 0xFFFF) - 1
    total = 0
    with memoryview(data) as view:  # released at once: a bytearray can be resized again
        for i in range(0, n, 256):
            total += (zlib.adler32(view[i:i + 256]) & 0xFFFF) - 1
    return total


def checksum(data: bytes | bytearray) -> int:
    """The FIX CheckSum (10) of ``data``: the sum of its bytes modulo 256."""
    return byte_sum(data) & 0xFF


class FixReader:
    """Incremental framer: :meth:`feed` returns the complete messages (raw bytes) and
    :class:`Garbled` markers found so far, in order."""

    def __init__(self, max_body: int = MAX_BODY, *, fast: bool = True) -> None:
        self.buf = bytearray()
        self.max_body = max_body
        self.fast = fast  # False: the general path only (tests compare the two)

    def feed(self, data: bytes) -> list[bytes | Garbled]:
        buf = self.buf
        buf += data
        out: list[bytes | Garbled] = []
        pos = 0
        n = len(buf)
        max_body = self.max_body
        fast = self.fast
        while pos < n:
            # fast path: a complete, well-framed message with the right CheckSum starts right
            # here (the common case); anything else takes the general path below, which
            # decides exactly as if the fast path did not exist
            if fast:
                msg = frame_at(buf, pos, n, max_body)
                if msg is not None:
                    out.append(msg)
                    pos += len(msg)
                    continue
            start = buf.find(b"8=FIX", pos)
            if start < 0:
                # keep a tail that may be the start of "8=FIX" split across reads
                keep = max(pos, n - 4)
                if keep > pos and buf[pos:keep].strip(SOH + b"\r\n"):
                    out.append(Garbled("bytes outside a message"))
                pos = keep
                break
            if start > pos and buf[pos:start].strip(SOH + b"\r\n"):
                out.append(Garbled("bytes outside a message"))
            begin_end = buf.find(SOH, start)
            if begin_end < 0 or begin_end + 3 > n:
                pos = start
                break
            inner = buf.find(b"8=FIX", start + 1, begin_end)
            if inner >= 0:  # "8=FIX8=FIX.4.4": a cut-off start, then the real one
                out.append(Garbled("bytes outside a message"))
                pos = inner
                continue
            if buf[begin_end + 1:begin_end + 3] != b"9=":
                out.append(Garbled("second field is not BodyLength (9)"))
                pos = start + 1
                continue
            len_end = buf.find(SOH, begin_end + 3, begin_end + 12)
            if len_end < 0:
                if n - begin_end < 12:
                    pos = start
                    break
                out.append(Garbled("BodyLength (9) too long"))
                pos = start + 1
                continue
            digits = bytes(buf[begin_end + 3:len_end])
            if not digits.isdigit() or int(digits) > self.max_body:
                out.append(Garbled(f"bad BodyLength {digits!r}"))
                pos = start + 1
                continue
            if buf[len_end + 1:len_end + 4] != b"35=" and n - len_end > 4:
                # MsgType must be the third field (QuickFIX 2t): not a message to answer
                out.append(Garbled("third field is not MsgType (35)"))
                pos = start + 1
                continue
            body_end = len_end + 1 + int(digits)
            end = body_end + 7
            if end > n:
                nxt = buf.find(b"8=FIX", start + 1)
                if 0 <= nxt < n and nxt < body_end:
                    # a new message starts inside this one's body: the length lied
                    out.append(Garbled("BodyLength (9) runs into the next message"))
                    pos = nxt
                    continue
                pos = start
                break
            if (buf[body_end:body_end + 3] != b"10=" or buf[end - 1] != 1
                    or not bytes(buf[body_end + 3:end - 1]).isdigit()):
                out.append(Garbled("BodyLength (9) does not end at CheckSum (10)"))
                pos = start + 1
                continue
            if int(buf[body_end + 3:end - 1]) != byte_sum(buf[start:body_end]) & 0xFF:
                out.append(Garbled("CheckSum (10) mismatch"))
                pos = end
                continue
            out.append(bytes(buf[start:end]))
            pos = end
        if pos:
            del buf[:pos]
        return out


def frame_at(buf: bytearray, pos: int, n: int, max_body: int) -> bytes | None:
    """The complete, well-framed message with the right CheckSum that starts at ``pos`` of
    ``buf`` (``n`` bytes long), or None: the framer's fast branch (the common case), also the
    session's fast path (:mod:`tickline.gateway.fix.fast`). None decides nothing: the general
    framing of :meth:`FixReader.feed` then decides, as if this did not exist.

    Written byte by byte (compiled, an index is a native operation where ``startswith`` or a
    slice and ``isdigit`` are method calls); the CheckSum is the byte sum of the message less
    that of its trailer: ``10=``, SOH and three times "0" (303) plus the digits' values."""
    if not buf.startswith(b"8=FIX.4.4\x019=", pos):
        return None
    i = pos + 12
    limit = pos + 21 if pos + 21 < n else n  # BodyLength: at most 8 digits, then SOH
    length = 0
    while True:
        if i >= limit:
            return None
        c = buf[i]
        if c == 1:
            break
        if c < 48 or c > 57:
            return None
        length = length * 10 + c - 48
        i += 1
    if i == pos + 12 or length > max_body:
        return None
    body_end = i + 1 + length
    end = body_end + 7
    if (end > n or buf[i + 1] != 51 or buf[i + 2] != 53 or buf[i + 3] != 61  # 35=
            or buf[body_end] != 49 or buf[body_end + 1] != 48 or buf[body_end + 2] != 61  # 10=
            or buf[end - 1] != 1):
        return None
    a = buf[end - 4] - 48
    b = buf[end - 3] - 48
    c = buf[end - 2] - 48
    if not (0 <= a <= 9 and 0 <= b <= 9 and 0 <= c <= 9):
        return None
    msg = bytes(buf[pos:end])
    if 100 * a + 10 * b + c != (byte_sum(msg) - 303 - a - b - c) & 0xFF:
        return None
    return msg


def parse(raw: bytes) -> FixMessage:
    """Split a framed message into fields. Raises :class:`FieldError` for a field that is not
    ``tag=value`` with a numeric tag (0: invalid tag number) or has an empty value (4).
    Values are latin-1 text (FIX is 8-bit; every byte maps to one character)."""
    parts = raw.decode("latin-1").split("\x01")
    parts.pop()  # after the last SOH
    fields: list[tuple[int, str]] = []
    append = fields.append
    for part in parts:
        tag, eq, value = part.partition("=")
        if not value or not tag.isdecimal():
            if eq and tag.isdecimal():
                raise FieldError(NO_VALUE, int(tag), f"tag {int(tag)} has no value")
            raise FieldError(INVALID_TAG, 0, f"invalid field {part[:32]!r}")
        append((int(tag), value))
    return FixMessage(fields, raw)


_HEADER = frozenset(spec.HEADER)
_TRAILER = frozenset(spec.TRAILER)
_INT_TYPES = frozenset(("INT", "SEQNUM", "LENGTH", "NUMINGROUP", "DAYOFMONTH"))
_DEC_TYPES = frozenset(("PRICE", "QTY", "FLOAT", "AMT", "PRICEOFFSET", "PERCENTAGE"))
_TS_TYPES = frozenset(("UTCTIMESTAMP",))
_MULTI = frozenset(("MULTIPLEVALUESTRING", "MULTIPLECHARVALUE", "MULTIPLESTRINGVALUE"))
_CHECKED_TYPES = _INT_TYPES | _DEC_TYPES | _TS_TYPES | {"BOOLEAN", "CHAR"}
# tags whose values need a check (a format or an enum): every other one is any text
_CHECKED = frozenset(t for t, ft in spec.FIELD_TYPES.items()
                     if ft in _CHECKED_TYPES or t in spec.ENUMS)


def _format_ok(ftype: str, value: str) -> bool:
    if ftype in _INT_TYPES:
        v = value[1:] if value[:1] == "-" else value
        return v.isdecimal()
    if ftype in _DEC_TYPES:
        v = value[1:] if value[:1] == "-" else value
        whole, dot, frac = v.partition(".")
        return (whole.isdecimal() or (not whole and frac.isdecimal())) and (
            not dot or not frac or frac.isdecimal())
    if ftype in _TS_TYPES:
        return _timestamp_ok(value)
    if ftype == "BOOLEAN":
        return value in ("Y", "N")
    if ftype == "CHAR":
        return len(value) == 1
    return True


_TIMESTAMP = re.compile(r"[0-9]{8}-[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?")


def _timestamp_ok(value: str) -> bool:
    # YYYYMMDD-HH:MM:SS[.sss]
    if _TIMESTAMP.fullmatch(value) is None:
        return False
    return (1 <= int(value[4:6]) <= 12 and 1 <= int(value[6:8]) <= 31
            and int(value[9:11]) < 24 and int(value[12:14]) < 60 and int(value[15:17]) < 61)


_epoch_cache: tuple[str, int] = ("", 0)


def parse_timestamp(value: str) -> float:
    """A UTCTIMESTAMP as seconds since the epoch (the value was validated); the whole-second
    part of the last value is cached (consecutive messages share it)."""
    global _epoch_cache
    head = value[:17]
    if _epoch_cache[0] == head:
        seconds = _epoch_cache[1]
    else:
        tm = (int(value[:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
              int(value[12:14]), int(value[15:17]), 0, 0, 0)
        seconds = calendar.timegm(tm)
        _epoch_cache = (head, seconds)
    return seconds + (int(value[18:21]) / 1000 if len(value) == 21 else 0.0)


def validate(msg: FixMessage) -> None:
    """Check ``msg`` against the FIX 4.4 dictionary; raise :class:`FieldError` with the
    SessionRejectReason of the first problem. Unknown or unhandled MsgTypes pass the checks
    that need their definition (the session answers them itself)."""
    fields = msg.fields
    if len(fields) < 4 or fields[0][0] != 8 or fields[1][0] != 9 or fields[2][0] != 35:
        raise FieldError(OUT_OF_ORDER, fields[2][0] if len(fields) > 2 else 35,
                         "BeginString, BodyLength and MsgType must be the first three fields")
    mt = msg.msg_type
    if mt not in spec.MSG_TYPES:
        raise FieldError(INVALID_MSGTYPE, 35, f"invalid MsgType {mt!r}")
    definition = spec.MESSAGES.get(mt)
    types = spec.FIELD_TYPES
    enums = spec.ENUMS
    table = _TABLES.get(mt) or _table(mt)
    groups = definition[3] if definition is not None else {}
    seen: set[int] = set()
    add = seen.add
    section = 0  # 0 header, 1 body, 2 trailer
    i = 3
    n = len(fields)
    while i < n:
        tag, value = fields[i]
        info = table.get(tag)
        if info is None:
            if tag not in types:
                raise FieldError(INVALID_TAG if tag < 5000 or tag > 49999 else UNDEFINED_TAG,
                                 tag, f"invalid tag number {tag}")
            if definition is not None:
                raise FieldError(NOT_DEFINED_FOR_TYPE, tag,
                                 f"tag {tag} is not defined for MsgType {mt}")
            info = (1, tag in _CHECKED, False)  # a MsgType without a definition here
        where, checked, group = info
        if where != section:
            if where < section:
                raise FieldError(OUT_OF_ORDER, tag, f"{'header' if where == 0 else 'body'} "
                                                    f"tag {tag} after the "
                                                    f"{'body' if section == 1 else 'trailer'}")
            section = where
        if tag in seen:
            raise FieldError(REPEATED_TAG, tag, f"tag {tag} appears more than once")
        add(tag)
        if checked:
            _check_value(tag, value, types, enums)
        i += 1
        if group:
            i = _check_group(fields, i, tag, int(value), groups[tag], groups, types, enums)
    if definition is not None and not definition[1] <= seen:
        tag = min(definition[1] - seen)
        raise FieldError(REQUIRED_MISSING, tag, f"required tag {tag} missing")
    if not seen >= _HEADER_REQUIRED:
        tag = min(_HEADER_REQUIRED - seen)
        raise FieldError(REQUIRED_MISSING, tag, f"required tag {tag} missing")


_HEADER_REQUIRED = spec.HEADER_REQUIRED - {8, 9, 35}
_TABLES: dict[str, dict[int, tuple[int, bool, bool]]] = {}


def _table(mt: str) -> dict[int, tuple[int, bool, bool]]:
    """Per MsgType: tag -> (section 0 header / 1 body / 2 trailer, needs a value check,
    starts a repeating group) for every tag the message may carry (built once)."""
    definition = spec.MESSAGES.get(mt)
    table: dict[int, tuple[int, bool, bool]] = {}
    if definition is not None:
        groups = definition[3]
        for tag in definition[2]:
            table[tag] = (1, tag in _CHECKED, tag in groups)
    for tag in spec.TRAILER:
        table[tag] = (2, tag in _CHECKED, False)
    for tag in spec.HEADER:
        table[tag] = (0, tag in _CHECKED, False)
    _TABLES[mt] = table
    return table


def _check_value(tag: int, value: str, types: dict[int, str],
                 enums: dict[int, frozenset[str]]) -> None:
    ftype = types[tag]
    if not _format_ok(ftype, value):
        raise FieldError(BAD_FORMAT, tag, f"incorrect data format for tag {tag}: {value!r}")
    allowed = enums.get(tag)
    if allowed is not None:
        values = value.split(" ") if ftype in _MULTI else (value,)
        for v in values:
            if v not in allowed:
                raise FieldError(BAD_VALUE, tag, f"value {v!r} is incorrect (out of range) "
                                                 f"for tag {tag}")


def _check_group(fields: list[tuple[int, str]], i: int, count_tag: int, count: int,
                 group: tuple[int, tuple[int, ...]],
                 groups: dict[int, tuple[int, tuple[int, ...]]], types: dict[int, str],
                 enums: dict[int, frozenset[str]]) -> int:
    """Consume the instances of one repeating group starting at ``fields[i]``; return the
    index after them. Raises ``GROUP_COUNT`` when the instances do not number ``count``."""
    delimiter, members = group
    member_set = frozenset(members)
    instances = 0
    in_instance: set[int] = set()
    n = len(fields)
    while i < n:
        tag, value = fields[i]
        if tag not in member_set:
            break
        if tag == delimiter:
            instances += 1
            in_instance = set()
        elif instances == 0:
            raise FieldError(OUT_OF_ORDER, tag, f"repeating group {count_tag} must start with "
                                                f"tag {delimiter}")
        if tag in in_instance:
            raise FieldError(REPEATED_TAG, tag, f"tag {tag} repeated in one group instance")
        in_instance.add(tag)
        _check_value(tag, value, types, enums)
        i += 1
        nested = groups.get(tag)
        if nested is not None and tag != count_tag:
            i = _check_group(fields, i, tag, int(value), nested, groups, types, enums)
    if instances != count:
        raise FieldError(GROUP_COUNT, count_tag, f"incorrect NumInGroup count for repeating "
                                                 f"group {count_tag}: {count} declared, "
                                                 f"{instances} present")
    return i


# -- parse and validate in one pass (the common case) --------------------------------------

_Check = Callable[[str], bool]
# per MsgType: tag text -> (tag, section 0/1/2, value check or None); None: no fast table
_FAST: dict[str, dict[str, tuple[int, int, _Check | None]] | None] = {}
_fast_ts_head = ""


def _fast_timestamp(value: str) -> bool:
    """UTCTIMESTAMP check for :func:`parse_valid`: a value in the same second as the last one
    accepted (consecutive messages share it) needs only its milliseconds checked."""
    global _fast_ts_head
    if len(value) == 21 and value[17] == "." and value[:17] == _fast_ts_head:
        return value[18:].isdecimal()
    if _timestamp_ok(value):
        _fast_ts_head = value[:17]
        return True
    return False


def _fast_check(tag: int) -> tuple[bool, _Check | None]:
    """(usable, check) for one tag in :func:`parse_valid`. A check may refuse more than
    :func:`validate` does (the message then takes the full path), never less."""
    if tag not in _CHECKED:
        return True, None
    ftype = spec.FIELD_TYPES[tag]
    allowed = spec.ENUMS.get(tag)
    if allowed is not None:
        if ftype in _MULTI:
            return True, lambda v: all(x in allowed for x in v.split(" "))
        if all(_format_ok(ftype, v) for v in allowed):
            return True, allowed.__contains__
        return False, None
    if ftype in _INT_TYPES:
        return True, str.isdecimal
    if ftype in _DEC_TYPES:
        return True, lambda v: v.replace(".", "", 1).isdecimal()
    if ftype in _TS_TYPES:
        return True, _fast_timestamp
    if ftype == "BOOLEAN":
        return True, frozenset(("Y", "N")).__contains__
    if ftype == "CHAR":
        return True, lambda v: len(v) == 1
    return False, None


def _fast_table(mt: str) -> dict[str, tuple[int, int, _Check | None]] | None:
    """The tags a message of type ``mt`` may carry on the fast path: the header, body and
    trailer tags of its definition except BeginString/BodyLength/MsgType (already placed)
    and the counters and members of repeating groups (those messages take the full path)."""
    definition = spec.MESSAGES.get(mt)
    table: dict[str, tuple[int, int, _Check | None]] | None = None
    if definition is not None:
        in_groups = set(definition[3])
        for _delimiter, members in definition[3].values():
            in_groups.update(members)
        table = {}
        for tag, (where, _checked, _group) in _table(mt).items():
            if tag in (8, 9, 35) or tag in in_groups:
                continue
            usable, check = _fast_check(tag)
            if usable:
                table[str(tag)] = (tag, where, check)
    _FAST[mt] = table
    return table


_NOT_SEPARATORS = bytes(b for b in range(256) if b not in (1, 61))  # all but SOH and "="
_ALTERNATING = tuple(b"=\x01" * k for k in range(128))  # the separators of k fields
_MAX_SHAPES = 64  # per MsgType: tag sequences remembered (bounds what a peer can make us keep)
# MsgType -> tag sequence (the tags of each field in order, then "", joined by "=") -> (tag
# numbers, (position, check) per field to check) or None (a sequence the fast path never
# accepts)
_SHAPES: dict[str, dict[str, tuple[tuple[int, ...], tuple[tuple[int, _Check], ...]] | None]] = {}


def parse_valid(raw: bytes) -> FixMessage | None:
    """:func:`parse` and :func:`validate` in one pass for a message in the common shape:
    ``8=FIX.4.4``, each field once, every tag defined for its MsgType outside repeating
    groups, sections in order, values well formed, required tags present. Returns None for
    anything else (the caller then runs :func:`parse` and :func:`validate`, which find the
    problem, if there is one, and name it), so both paths accept exactly the same messages
    and give them the same values.

    What a message's *tags* say (defined, in order, once each, required ones there) depends
    only on its sequence of tags, so that verdict is remembered per sequence (a session sends
    the same few shapes over and over) and a message of a known shape costs one C-level
    split and the checks of its typed values. A message with "=" inside a value, or a new
    shape when the cache is full, goes field by field."""
    seps = raw.translate(None, _NOT_SEPARATORS)
    n = len(seps) >> 1
    if n >= len(_ALTERNATING) or seps != _ALTERNATING[n] or n < 4:
        return _parse_valid_fields(raw)  # "=" inside a value (or a huge message)
    if not raw.startswith(b"8=FIX.4.4\x01"):
        return None  # not FIX.4.4: the full path names the problem
    flat = raw.decode("latin-1").replace("=", "\x01").split("\x01")
    mt = flat[5]
    shapes = _SHAPES.get(mt)
    if shapes is None:
        if (_FAST[mt] if mt in _FAST else _fast_table(mt)) is None:
            return None
        shapes = _SHAPES[mt] = {}
    key = "=".join(flat[0::2])  # the tags in order ("=" cannot be in a tag)
    try:
        plan = shapes[key]
    except KeyError:  # (not a sentinel compared with "is": compiled, a tuple is a value)
        plan = _shape_plan(mt, tuple(flat[0::2]))
        if len(shapes) < _MAX_SHAPES:
            shapes[key] = plan
    if plan is None:
        return None
    vals = flat[1::2]
    if "" in vals:
        return None  # an empty value: the full path names the problem
    for pos, check in plan[1]:
        if not check(vals[pos]):
            return None
    if not COMPILED:  # interpreted, the C loop of dict(zip(...)) is the cheapest
        return FixMessage(None, raw, dict(zip(plan[0], vals, strict=True)))
    # compiled, one dict store per field is a native loop, where dict(zip(...)) built and
    # unpacked a 2-tuple per field (about 16k of the function's 41k instructions)
    tags = plan[0]
    values: dict[int, str] = {}
    for k in range(len(tags)):
        values[tags[k]] = vals[k]
    return FixMessage(None, raw, values)


def _shape_plan(mt: str, key: tuple[str, ...]) -> tuple[tuple[int, ...],
                                                        tuple[tuple[int, _Check], ...]] | None:
    """The tag numbers and value checks of messages whose tags are ``key`` (then "": after
    the last SOH), or None when the tags alone disqualify them from the fast path (the same
    rules as :func:`_parse_valid_fields`)."""
    table = _FAST.get(mt)
    if table is None or key[:3] != ("8", "9", "35") or key[-1] != "":
        return None
    numbers = [8, 9, 35]
    checks: list[tuple[int, _Check]] = []
    section = 0
    for pos in range(3, len(key) - 1):
        info = table.get(key[pos])
        if info is None:
            return None
        number, where, check = info
        if where < section or number in numbers:
            return None
        section = where
        numbers.append(number)
        if check is not None:
            checks.append((pos, check))
    if not _required(mt) <= set(numbers):
        return None
    return tuple(numbers), tuple(checks)


def _required(mt: str) -> frozenset[int]:
    required = _REQUIRED.get(mt)
    if required is None:
        definition = spec.MESSAGES[mt]
        required = _REQUIRED[mt] = definition[1] | _HEADER_REQUIRED | spec.TRAILER_REQUIRED
    return required


def _parse_valid_fields(raw: bytes) -> FixMessage | None:
    """:func:`parse_valid` field by field (any message)."""
    parts = raw.decode("latin-1").split("\x01")
    if len(parts) < 5 or parts[0] != "8=FIX.4.4" or parts[1][:2] != "9=":
        return None
    mt_field = parts[2]
    if mt_field[:3] != "35=":
        return None
    mt = mt_field[3:]
    table = _FAST[mt] if mt in _FAST else _fast_table(mt)
    if table is None:
        return None
    values = {8: "FIX.4.4", 9: parts[1][2:], 35: mt}
    section = 0
    get = table.get
    parts.pop()  # after the last SOH
    for k in range(3, len(parts)):
        tag, _, value = parts[k].partition("=")
        info = get(tag)
        if info is None or not value:
            return None
        number, where, check = info
        if where != section:
            if where < section:
                return None
            section = where
        if number in values or (check is not None and not check(value)):
            return None
        values[number] = value
    if not values.keys() >= _required(mt):
        return None
    return FixMessage(None, raw, values)


_REQUIRED: dict[str, frozenset[int]] = {}


# -- the session rules' common case (compiled with the codec) -------------------------------

# (second, tolerance, lowest, highest SendingTime second "YYYYMMDD-HH:MM:SS" that is within
# the tolerance of every instant of that second); a value outside takes the exact check
_st_window: tuple[int, float, str, str] = (-1, 0.0, "~", "")


def sending_window(sec: int, tolerance: float) -> tuple[int, float, str, str]:
    """The SendingTime seconds S with ``|now - t| <= tolerance`` for every ``now`` in
    ``[sec, sec + 1)`` and every ``t`` in ``[S, S + 1)``: ``sec + 1 - tolerance <= S`` and
    ``S <= sec + tolerance - 1`` (fixed-width text compares like the times); remembered for
    the next call of the same second."""
    global _st_window
    window = _st_window
    if window[0] == sec and window[1] == tolerance:
        return window
    lo = math.ceil(sec + 1 - tolerance)
    hi = math.floor(sec + tolerance - 1)
    if lo > hi or lo < 0:
        window = (sec, tolerance, "~", "")  # nothing is certain: always the exact check
    else:
        fmt = "%Y%m%d-%H:%M:%S"
        window = (sec, tolerance, time.strftime(fmt, time.gmtime(lo)),
                  time.strftime(fmt, time.gmtime(hi)))
    _st_window = window
    return window


def sending_time_certain(value: str, tolerance: float, now: float) -> bool:
    """True when SendingTime ``value`` is within ``tolerance`` seconds of ``now`` whatever its
    fraction of a second (a text comparison); False means "not certain": the caller checks
    exactly (:func:`parse_timestamp`)."""
    window = sending_window(int(now), tolerance)
    return window[2] <= value[:17] <= window[3]


def routine(msg: FixMessage, sender: str, target: str, expected: int, tolerance: float,
            now: float) -> bool:
    """True when a message from :func:`parse_valid` of a logged-on session passes the session
    rules the common way: SenderCompID ``sender``, TargetCompID ``target``, no PossDupFlag
    (43), not a SequenceReset, MsgSeqNum (34) the ``expected`` one and SendingTime certainly
    within ``tolerance`` of ``now``. The session then consumes the number and dispatches
    the message; False: it runs the full rules, which decide everything else (and decide
    the same for every message this accepts)."""
    values = msg.values
    if msg.msg_type == "4" or 43 in values:
        return False
    if values.get(49) != sender or values.get(56) != target:
        return False
    seq = values.get(34, "")
    if not 0 < len(seq) < 19 or not seq.isdecimal() or int(seq) != expected:
        return False
    return sending_time_certain(values.get(52, ""), tolerance, now)


_ts_cache: tuple[int, bytes] = (-1, b"")


def sending_time(now: float | None = None) -> bytes:
    """UTC ``YYYYMMDD-HH:MM:SS.sss`` for ``now`` (default: the clock); cached per millisecond
    (one message per report is encoded at high rates)."""
    global _ts_cache
    t = time.time() if now is None else now
    ms = int(t * 1000)
    if _ts_cache[0] == ms:
        return _ts_cache[1]
    tm = time.gmtime(ms // 1000)
    text = b"%04d%02d%02d-%02d:%02d:%02d.%03d" % (tm.tm_year, tm.tm_mon, tm.tm_mday,
                                                  tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000)
    _ts_cache = (ms, text)
    return text


def body(fields: Iterable[tuple[int, str | int | bytes]]) -> bytes:
    """Encode body fields (in order) as ``tag=value<SOH>...``."""
    out = bytearray()
    for tag, value in fields:
        if isinstance(value, bytes):
            out += b"%d=%s\x01" % (tag, value)
        else:
            out += f"{tag}={value}\x01".encode()
    return bytes(out)


_TRAILERS = tuple(b"10=%03d\x01" % i for i in range(256))


class Encoder:
    """Outbound message encoder of one session (SenderCompID ``sender``, TargetCompID
    ``target``): the constant part of the header (MsgType, CompIDs) is encoded once per
    MsgType, the CheckSum trailer comes from a table."""

    def __init__(self, sender: str, target: str) -> None:
        self.comp_ids = f"49={sender}\x0156={target}\x01".encode()
        self._prefixes: dict[str, bytes] = {}  # MsgType -> "35=..|49=..|56=..|34="

    def encode(self, msg_type: str, seq: int, body_bytes: bytes, *, now: bytes | None = None,
               poss_dup: bytes | None = None) -> bytes:
        """One complete message: header (``poss_dup`` = the OrigSendingTime of a resent
        message: PossDupFlag=Y and OrigSendingTime are added), ``body_bytes``, trailer."""
        ts = now if now is not None else sending_time()
        if poss_dup is None:
            prefix = self._prefixes.get(msg_type)
            if prefix is None:
                prefix = b"35=%s\x01%s34=" % (msg_type.encode(), self.comp_ids)
                self._prefixes[msg_type] = prefix
            head = b"%d\x0152=%s\x01" % (seq, ts)
            msg = b"8=FIX.4.4\x019=%d\x01%s%s%s" % (len(prefix) + len(head) + len(body_bytes),
                                                   prefix, head, body_bytes)
        else:
            payload = b"35=%s\x01%s34=%d\x0143=Y\x0152=%s\x01122=%s\x01%s" % (
                msg_type.encode(), self.comp_ids, seq, ts, poss_dup, body_bytes)
            msg = b"8=FIX.4.4\x019=%d\x01%s" % (len(payload), payload)
        return msg + _TRAILERS[byte_sum(msg) & 0xFF]
