"""The WebSocket gateway's admission rules and token buckets, unit by unit (the clock is
passed in; the over-the-socket behaviour is in test_http_hostile.py)."""

from __future__ import annotations

import socket

import pytest

from tickline.gateway.admission import Admission, OriginError, OriginPolicy, parse_origin


@pytest.mark.parametrize(("origin", "want"), [
    ("http://LocalHost:8080", ("http", "localhost", 8080)),
    ("https://a.example", ("https", "a.example", 443)),
    ("http://a.example/", ("http", "a.example", 80)),
    ("http://[::1]:9", ("http", "[::1]", 9)),
])
def test_parse_origin(origin: str, want: tuple[str, str, int]) -> None:
    assert parse_origin(origin) == want


@pytest.mark.parametrize("bad", ["null", "", "a.example", "ftp://a.example",
                                 "http://a.example/x", "http://u@a.example",
                                 "http://a.example:99999", "http://a.example?q=1"])
def test_parse_origin_refuses(bad: str) -> None:
    with pytest.raises(OriginError):
        parse_origin(bad)


def test_origin_policy_by_bind_address() -> None:
    loop = OriginPolicy([("127.0.0.1", 80), ("::1", 80)])
    assert loop.allows(None) and loop.allows("http://localhost") and loop.allows("http://[::1]")
    assert not loop.allows("http://localhost:81") and not loop.allows("http://10.1.2.3")
    one = OriginPolicy([("10.1.2.3", 8080)], ["https://dash.example.com"])
    assert one.allows("http://10.1.2.3:8080") and one.allows("https://dash.example.com")
    assert not one.allows("http://localhost:8080") and not one.allows("http://evil.example:8080")
    wildcard = OriginPolicy([("0.0.0.0", 8080)])
    assert wildcard.allows("http://127.0.0.1:8080")
    assert wildcard.allows(f"http://{socket.gethostname()}:8080")
    assert not wildcard.allows("http://evil.example:8080")


def test_admission_budgets() -> None:
    a = Admission(max_sessions=4, max_anonymous=2, max_per_address=3)
    assert a.check("x") == (None, False)
    a.open("x", False)
    a.open("x", False)
    refusal, probation = a.check("x")
    assert refusal is None and probation  # anonymous budget full: on probation
    a.open("x", True)
    refusal, _ = a.check("x")
    assert refusal is not None and refusal.code == "too_many_from_address"
    a.logged_in("x", True)  # the probation session logs in: its address slot is free
    assert a.check("x") == (None, True)
    a.open("y", True)
    refusal, _ = a.check("z")
    assert refusal is not None and refusal.code == "too_many_sessions"
    a.close("x", logged_in=True, probation=True)
    a.close("x", logged_in=False, probation=False)
    assert (a.sessions, a.anonymous, a.probation) == (2, 1, 1)
    assert a.check("x") == (None, False)
