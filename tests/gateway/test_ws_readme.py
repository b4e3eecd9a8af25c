"""The README's example WebSocket session is true: replayed request by request against a fresh
server, each request gets exactly the messages the README shows (``"..."`` matches any
timestamp). Messages of one request may arrive split over several frames and, between
market data and private reports, in another order; the test compares the multiset of
messages each request produced, with nothing missing and nothing extra."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from tests.gateway.test_http import request, running, settle, ws_connect

README = Path(__file__).resolve().parents[2] / "README.md"


def session() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``[(request, expected messages)]`` from the README's ``ws-session`` block."""
    blocks = re.findall(r"```ws-session\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    steps: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for line in blocks[0].splitlines():
        if line.startswith("> "):
            steps.append((json.loads(line[2:]), []))
        elif line.startswith("< "):
            steps[-1][1].extend(json.loads(line[2:]))
        else:
            assert not line.strip(), line
    return steps


def matches(expected: Any, got: Any) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return (isinstance(got, dict) and expected.keys() == got.keys()
                and all(matches(v, got[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return (isinstance(got, list) and len(expected) == len(got)
                and all(matches(e, g) for e, g in zip(expected, got, strict=True)))
    return bool(expected == got) and type(expected) is type(got)


def test_readme_websocket_session_is_what_the_server_says(tmp_path: Path) -> None:
    steps = session()
    assert len(steps) >= 8

    async def scenario() -> None:
        async with running(tmp_path) as (ex, gw):
            ws = await ws_connect(gw.port)
            for req, expected in steps:
                await request(ws, req)
                got: list[dict[str, Any]] = []
                while len(got) < len(expected):
                    got.extend(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                await settle(ex)
                await asyncio.sleep(0.05)
                # and nothing more
                try:
                    extra = await asyncio.wait_for(ws.recv(), 0.2)
                    got.extend(json.loads(extra))
                except TimeoutError:
                    pass
                left = list(got)
                for want in expected:
                    hit = next((g for g in left if matches(want, g)), None)
                    assert hit is not None, (req, want, got)
                    left.remove(hit)
                assert not left, (req, left)
            await ws.close()

    asyncio.run(scenario())


def test_matches_is_strict() -> None:
    assert matches({"a": "...", "b": [1, "x"]}, {"a": 5, "b": [1, "x"]})
    assert not matches({"a": 1}, {"a": 1, "b": 2})
    assert not matches({"a": 1}, {"a": True})
    assert not matches([1, 2], [1])
