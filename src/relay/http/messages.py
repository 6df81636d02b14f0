"""Plain-Python HTTP values passed between the Workers adapter and the core.

The core never sees a runtime object except an upstream body's stream, which it holds
opaque and hands to the adapter's stream operations (deliver.Streams).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# 1 to 18 ASCII digits: within the 64-bit integers SQLite (and so D1) holds.
_WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(text: str) -> int | None:
    """The number a field or query parameter writes in ASCII digits (HTTP's 1*DIGIT), else
    None. `str.isdigit()` is no such test: it takes "²", which int() refuses, and "٣",
    which int() reads as 3."""
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else None


def content_kind(content_type: str | None) -> str:
    """What a body's content-type says it is, as relay reads and meters it: "events"
    (text/event-stream: server-sent events), "json" (any JSON type), or "other"."""
    kind = (content_type or "").lower()
    if kind.startswith("text/event-stream"):
        return "events"
    return "json" if "json" in kind else "other"


class Headers:
    """An ordered multi-map of header fields with case-insensitive names."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()):
        self._items = [(name.lower(), value) for name, value in items]
        self._first: dict[str, str] | None = None  # each name's first value, made on the first get

    def get(self, name: str, default: str | None = None) -> str | None:
        if self._first is None:
            self._first = dict(reversed(self._items))  # reversed: each name's first value is set last
        return self._first.get(name.lower(), default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __repr__(self) -> str:
        return f"Headers({len(self._items)} fields)"


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Headers
    # The body, given the most bytes relay will hold of it: None when it holds more (it is
    # then read no further: bodies.request_body).
    read_body: Callable[[int], Awaitable[bytes | None]]


class Tap(Protocol):
    """Sees a response body as the client gets it, off the client's path: every byte of
    relay's own bodies, of JSON answers and of event streams (from a copy); of any
    other upstream body (a file passed through), that it began and how it ended.

    deliver.py feeds it, then calls `finish` once the body has ended or the client has
    gone (or `close`, which does what it can at once and returns the rest to await, if
    any)."""

    status: int  # the status the client got (deliver's to set if it answers otherwise)

    def feed(self, chunk: bytes, at: float | None = None) -> None:
        """More of the body; `at`, when the first of it arrived if not now (epoch seconds)."""

    def broke_off(self) -> None:
        """A body the tap does not read ended early: the client or the upstream went away,
        which cannot be told apart there."""

    def too_large(self) -> None:
        """The body is a JSON answer too large for relay to read: its usage is unknown."""

    async def finish(self, client_gone: bool) -> None: ...

    def close(self, client_gone: bool) -> Awaitable[None] | None: ...


class UpstreamBody:
    """An upstream answer's body, as the adapter's Transport gives it: the runtime's
    `stream`, and `abort`, which ends the call sending it. Aborting after the answer has
    begun errors the body and cancels the provider's request (a stream the runtime is
    reading whole cannot be cancelled otherwise)."""

    __slots__ = ("stream", "abort")

    def __init__(self, stream: Any, abort: Callable[[], None]):
        self.stream, self.abort = stream, abort


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    # bytes made by relay; an UpstreamBody, passed through as it is; an async iterator of
    # bytes made by relay from an upstream stream (a translation); or None (an upstream
    # answer without a body). Once delivered (deliver.deliver): bytes, None or a stream.
    body: Any = b""
    tap: Tap | None = None


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An answer of relay's own with `payload` as its JSON body."""
    return Response(status, [("content-type", "application/json"), *headers], json.dumps(payload).encode())


class UpstreamUnreachable(Exception):
    """The upstream could not be reached (DNS, connect, TLS, reset before a response)."""


class UpstreamTimeout(UpstreamUnreachable):
    """The upstream did not start its answer in time (the request was abandoned)."""


class Transport(Protocol):
    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None, timeout: float | None = None
    ) -> Response:
        """Send one request upstream; raise UpstreamUnreachable when no response came, and
        UpstreamTimeout when its status and headers took longer than `timeout` seconds (the
        body, a stream perhaps minutes long, is not timed). The answer's body is an
        UpstreamBody, None, or bytes when the transport read it with the head (one that
        deliver.reads_whole says is read whole)."""

    async def discard(self, body: Any) -> None:
        """Drop a response body that will not be passed on, freeing its connection."""

    def chunks(self, body: Any) -> AsyncGenerator[bytes, None]:
        """Read an upstream body in Python, chunk by chunk as it arrives (deliver.chunks);
        one already read, as bytes, in one chunk."""
