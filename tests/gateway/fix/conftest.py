"""FIX tests: when the QuickFIX bindings (extra ``fix-interop``) are missing, the interop
tests are skipped — and the test summary says so loudly, so a green run without them is never
mistaken for a proven gateway."""

from __future__ import annotations

import pytest

try:
    import quickfix  # noqa: F401
    QUICKFIX = True
except ImportError:
    QUICKFIX = False


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not QUICKFIX:
        terminalreporter.write_sep(
            "!", "QUICKFIX NOT INSTALLED: the FIX interoperability tests were SKIPPED "
                 "(pip install --only-binary=:all: quickfix-ssl==1.15.1.post4)",
            red=True, bold=True)
