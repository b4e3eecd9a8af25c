"""tickline: a real-time event engine in Python and a working exchange built on it."""

__version__ = "0.1.0"
