"""tickline: a real-time event engine in Python and a working exchange built on it."""

__version__ = "0.1.0"

from tickline import _build

_build.activate()  # before any other tickline module: picks compiled or pure modules
