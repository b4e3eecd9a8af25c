"""Topic names and subscription patterns: validation and NATS-style wildcard matching.

Topics are dot-separated tokens (``trades.AAPL``, ``bars.AAPL.1s``, ``exec.42``). A
subscription pattern may use wildcards: ``*`` matches exactly one token, ``>`` (last token
only) matches one or more remaining tokens. ``depth.*`` matches ``depth.AAPL`` but not
``depth`` or ``depth.AAPL.x``; ``bars.>`` matches ``bars.AAPL.1s``.

Pure functions, no state: the :class:`~tickline.stream.bus.Bus` splits a pattern once at
subscribe time and matches token tuples when it first sees a topic (then caches the result),
so nothing here is on the per-message path. Private namespaces are the bus's concern.
"""

from __future__ import annotations

__all__ = ["topic_matches"]


def _split_pattern(pattern: str) -> tuple[str, ...]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be a non-empty string, got {pattern!r}")
    tokens = tuple(pattern.split("."))
    for i, token in enumerate(tokens):
        if not token:
            raise ValueError(f"pattern {pattern!r} has an empty token")
        if token == ">" and i != len(tokens) - 1:
            raise ValueError(f"pattern {pattern!r}: '>' may only be the last token")
        if token not in ("*", ">") and ("*" in token or ">" in token):
            raise ValueError(f"pattern {pattern!r}: wildcards must be whole tokens")
    return tokens


def _check_topic(topic: str) -> tuple[str, ...]:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic must be a non-empty string, got {topic!r}")
    tokens = tuple(topic.split("."))
    for token in tokens:
        if not token or "*" in token or ">" in token:
            raise ValueError(f"topic {topic!r} must be dot-separated tokens without wildcards")
    return tokens


def _tokens_match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    n = len(pattern)
    for i, token in enumerate(pattern):
        if token == ">":
            return len(topic) > i
        if i >= len(topic):
            return False
        if token != "*" and token != topic[i]:
            return False
    return n == len(topic)


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``pattern`` (with ``*``/``>`` wildcards) matches the concrete ``topic``.

    Pure wildcard semantics; the bus additionally keeps wildcard-first patterns out of
    private namespaces.
    """
    return _tokens_match(_split_pattern(pattern), _check_topic(topic))
