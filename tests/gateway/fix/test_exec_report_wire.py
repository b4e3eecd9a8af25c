"""The ExecutionReport body builder (:func:`app.exec_report`) gives the very bytes the
first implementation gave (kept below as the reference): the wire is unchanged by the
faster formatting (integer AvgPx rounding instead of ``Fraction``, one format per group
of fields)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from tickline.gateway.fix import app
from tickline.matching import Instrument
from tickline.stream.reports import ExecKind, ExecReport


def _ref_units(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    s = str(abs(units)).rjust(decimals + 1, "0")
    return f"{sign}{s[:-decimals]}.{s[-decimals:]}"


def _ref_avg(notional: int, quantity: int, inst: Instrument) -> str:
    if not quantity:
        return "0"
    avg = Fraction(notional, quantity)
    d = inst.price_decimals
    if avg.denominator == 1:
        return _ref_units(avg.numerator, d)
    return _ref_units(round(avg * 10**6), d + 6).rstrip("0")


def _ref_exec_report(r: ExecReport, inst: Instrument, transact_time: bytes, *,
                     clid: str | None = None, orig_clid: str = "") -> bytes:
    kind = r.kind
    pd, qd = inst.price_decimals, inst.qty_decimals
    leaves = r.leaves
    if kind == ExecKind.FILL:
        exec_type, status = "F", "2" if leaves == 0 else "1"
    elif kind == ExecKind.NEW:
        exec_type, status = "0", "0"
    elif kind == ExecKind.CANCELLED:
        exec_type, status, leaves = "4", "4", 0
    elif kind == ExecKind.REPLACED:
        exec_type, status = "5", "1" if r.cum_quantity else "0"
    elif kind == ExecKind.EXPIRED:
        exec_type, status, leaves = "C", "C", 0
    elif kind == ExecKind.TRIGGERED:
        exec_type, status = "L", "1" if r.cum_quantity else "0"
    else:
        exec_type, status, leaves = "8", "8", 0
    cl = r.client_order_id if clid is None else clid
    parts = [b"37=%d\x01" % r.order_id if r.order_id else b"37=NONE\x01"]
    if cl:
        parts.append(b"11=%s\x01" % cl.encode())
    if orig_clid:
        parts.append(b"41=%s\x01" % orig_clid.encode())
    parts.append(b"17=%d-%d\x01" % (r.account, r.seq) if r.seq else b"17=R\x01")
    parts.append(b"150=%s\x0139=%s\x01" % (exec_type.encode(), status.encode()))
    if kind == ExecKind.REJECTED:
        parts.append(b"103=%d\x01" % app.ORD_REJ.get(r.reason, 99))
    parts.append(b"55=%s\x0154=%d\x01" % (r.symbol.encode(), r.side if r.side in (1, 2) else 1))
    if r.quantity:
        parts.append(b"38=%s\x01" % _ref_units(r.quantity, qd).encode())
    if r.price:
        parts.append(b"44=%s\x01" % _ref_units(r.price, pd).encode())
    if r.stop_price:
        parts.append(b"99=%s\x01" % _ref_units(r.stop_price, pd).encode())
    if kind == ExecKind.FILL:
        parts.append(b"32=%s\x0131=%s\x01" % (_ref_units(r.last_quantity, qd).encode(),
                                             _ref_units(r.last_price, pd).encode()))
    parts.append(b"151=%s\x0114=%s\x016=%s\x0160=%s\x01" % (
        _ref_units(leaves, qd).encode(), _ref_units(r.cum_quantity, qd).encode(),
        _ref_avg(r.cum_notional, r.cum_quantity, inst).encode(), transact_time))
    if kind == ExecKind.REJECTED or r.text:
        parts.append(b"58=%s\x01" % app._text(r.text or app.reject_name(r.reason)))
    return b"".join(parts)


SMALL = st.integers(0, 10**6) | st.integers(0, 10**15)
REPORTS = st.builds(
    ExecReport, seq=st.integers(1, 10**9), ts=st.just(1), account=st.integers(1, 99),
    kind=st.integers(1, 8), symbol=st.sampled_from(["AAPL", "BTC-USD"]),
    order_id=st.integers(0, 10**12), client_order_id=st.text("abcXYZ019-", max_size=12),
    side=st.integers(0, 3), price=SMALL, quantity=SMALL, leaves=SMALL, last_price=SMALL,
    last_quantity=SMALL, reason=st.integers(0, 420), text=st.text("ab c=", max_size=6),
    cum_quantity=st.integers(0, 10**6), cum_notional=st.integers(-10**9, 10**12),
    stop_price=SMALL)


@given(REPORTS, st.integers(0, 8), st.integers(0, 8), st.none() | st.text("q1", max_size=3),
       st.text("o2", max_size=3))
@settings(max_examples=1500, deadline=None)
def test_exec_report_bytes_are_unchanged(r: ExecReport, pd: int, qd: int, clid: str | None,
                                         orig: str) -> None:
    inst = Instrument(symbol="AAPL", tick_size=1, lot_size=1, price_decimals=pd, qty_decimals=qd)
    got = app.exec_report(r, inst, b"20260101-00:00:00.000", clid=clid, orig_clid=orig)
    want = _ref_exec_report(r, inst, b"20260101-00:00:00.000", clid=clid, orig_clid=orig)
    assert got == want


@given(st.integers(-10**15, 10**15), st.integers(0, 12))
def test_units_and_avg_formatting_are_unchanged(units: int, decimals: int) -> None:
    assert app.fmt_units(units, decimals) == _ref_units(units, decimals)
    inst = Instrument(symbol="AAPL", tick_size=1, lot_size=1, price_decimals=decimals)
    for q in (1, 2, 3, 7, 8, 1000, -3):
        assert app.fmt_avg(units, q, inst) == _ref_avg(units, q, inst)


@given(REPORTS, st.none() | st.text("q1", max_size=3), st.sampled_from(["", "", "o2"]))
@settings(max_examples=800, deadline=None)
def test_exec_report_bytes_are_unchanged_for_cents_and_lots(r: ExecReport, clid: str | None,
                                                            orig: str) -> None:
    """The demo instruments' shape (2 price decimals, whole lots): the common report's own
    format gives the same bytes."""
    inst = Instrument(symbol="AAPL", tick_size=1, lot_size=1, price_decimals=2, qty_decimals=0)
    for text in ("", r.text):
        case = ExecReport(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "text": text})
        got = app.exec_report(case, inst, b"20260101-00:00:00.000", clid=clid, orig_clid=orig)
        want = _ref_exec_report(case, inst, b"20260101-00:00:00.000", clid=clid,
                                orig_clid=orig)
        assert got == want
