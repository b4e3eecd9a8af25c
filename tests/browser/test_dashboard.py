"""The dashboard in a real browser: Debian's ``chromium`` driven headless by the Python
``playwright`` package (the ``browser`` extra; ``executable_path``, no browser download),
against a real ``tickline demo`` process on free ports.

Checks: depth, trades and candles appear and change over a few seconds; prices are decimal
text in the DOM; the chart's ``data-candles`` counts the candles shown; with ``#key=...`` the
order-entry panel is enabled and an order entered there appears in the depth ladder (without
a key it stays disabled); no console errors. A screenshot is saved under
``tests/artifacts/`` (gitignored).

Skipped, saying why, only when chromium or playwright is not installed (``.ci/run`` and
``make test`` install both).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TICKLINE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DECIMAL = re.compile(r"^\d+\.\d+$")

pytestmark = pytest.mark.slow

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="the 'browser' extra (playwright) is not installed")
if not Path(CHROMIUM).exists():  # pragma: no cover - CI installs it
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``tickline demo`` (its own journal directory and ports); yields its URL."""
    port, http_port = free_port(), free_port()
    journal = tmp_path_factory.mktemp("demo-journal")
    exe = shutil.which("tickline", path=str(Path(sys.executable).parent)) or "tickline"
    log = journal.parent / "demo.log"
    log_file = log.open("wb")
    proc = subprocess.Popen(
        [exe, "demo", "--duration", "120", "--port", str(port), "--http-port", str(http_port),
         "--journal-dir", str(journal)],
        stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = log.read_text(errors="replace")
                raise RuntimeError(f"tickline demo did not come up: {err[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log_file.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def wait_for(page: object, expression: str, timeout: float = 10.0) -> None:
    """Poll ``expression`` in the page until it is true. (Playwright's ``wait_for_function``
    evaluates a string, which the page's Content-Security-Policy forbids -- rightly -- so
    the predicate goes through ``evaluate`` instead, which the policy does not apply to.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {expression}")
        time.sleep(0.1)


def ladder(page: object, side: str) -> list[tuple[str, str]]:
    """``[(price, quantity)]`` of one side of the depth ladder as the DOM shows it."""
    rows = page.eval_on_selector_all(  # type: ignore[attr-defined]
        f"#{side} tr.{side[:-1]}",
        "rows => rows.map(r => [r.children[2].textContent, r.children[1].textContent])")
    return [(p, q) for p, q in rows]


def test_dashboard_shows_market_chart_and_takes_an_order(demo: str, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo + "/#key=demo-key-1")
    # The key leaves the address bar at once.
    assert "key=" not in page.url
    # Depth, trades and candles appear.
    wait_for(page, "document.querySelectorAll('#bids tr.bid').length > 0", timeout=15)
    wait_for(page, "document.querySelectorAll('#tape tr').length > 0", timeout=15)
    wait_for(page,
        "Number(document.querySelector('[data-testid=price-chart]').dataset.candles) >= 2",
        timeout=20)
    first_depth = page.text_content("#depthinfo")
    first_tape = page.inner_text("#tape")
    first_candles = int(page.get_attribute("[data-testid=price-chart]", "data-candles") or 0)
    first_close = page.text_content("#c-close")
    # Prices are decimal text.
    for sel in ("#c-open", "#c-high", "#c-low", "#c-close", "#c-bid", "#c-ask", "#c-last"):
        text = page.text_content(sel) or ""
        assert DECIMAL.match(text), (sel, text)
    bids, asks = ladder(page, "bids"), ladder(page, "asks")
    assert bids and asks and all(DECIMAL.match(p) for p, _ in bids + asks)
    assert Decimal(bids[0][0]) < Decimal(asks[-1][0])  # asks are shown best last (above)
    # ... and they change over a few seconds.
    wait_for(page,
        f"Number(document.querySelector('[data-testid=price-chart]').dataset.candles) > "
        f"{first_candles} || document.querySelector('#c-close').textContent !== "
        f"{first_close!r}", timeout=15)
    page.wait_for_timeout(1500)
    assert page.text_content("#depthinfo") != first_depth
    assert page.inner_text("#tape") != first_tape
    # The order-entry panel is enabled by the key; an order entered there shows in the ladder.
    wait_for(page, "!document.querySelector('#entryfields').disabled", timeout=10)
    best_bid = Decimal(ladder(page, "bids")[0][0])
    price = str(best_bid - Decimal("0.05"))
    page.fill("[data-testid=order-price]", price)
    page.fill("[data-testid=order-qty]", "777")
    page.check("[data-testid=order-postonly]")
    page.click("[data-testid=order-buy]")
    wait_for(page,
        "document.querySelector('[data-testid=order-status]').textContent.startsWith('new')",
        timeout=10)
    wait_for(page,
        f"[...document.querySelectorAll('#bids tr.bid')].some(r => "
        f"r.children[2].textContent === {price!r} && Number(r.children[1].textContent) >= 777)",
        timeout=10)
    assert price in page.inner_text("#my-orders-body")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    # Cancel it again from the panel: it leaves the ladder.
    page.click("[data-testid=order-cancel-all]")
    wait_for(page,
        f"![...document.querySelectorAll('#bids tr.bid')].some(r => "
        f"r.children[2].textContent === {price!r} && Number(r.children[1].textContent) >= 777)",
        timeout=10)
    assert errors == []
    page.close()


def test_dashboard_without_a_key_is_read_only(demo: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(demo + "/")
    wait_for(page, "document.querySelectorAll('#bids tr.bid').length > 0", timeout=15)
    assert page.is_disabled("[data-testid=order-buy]")
    assert page.text_content("#entryinfo") == "read only"
    assert errors == []
    page.close()
