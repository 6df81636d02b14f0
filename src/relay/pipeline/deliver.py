"""How an answer's body reaches the client, and what its tap (the audit row's meter) sees.

Every decision of delivery is here: which kind of body an answer has (relay's own bytes;
an async iterator of bytes, a translated stream; an upstream body stream), which upstream
bodies are read whole (within a bound: bodies.py), tee'd or piped uncopied, what the tap
reads of a copy and when, and how a request ended (the client gone, or the upstream broken
off). The adapter lends the few stream operations the runtime does natively (`Streams`),
so the client's copy of an upstream stream passes with no Python per chunk; unit tests
lend a fake of them (tests/fakes/streams.py) that also counts how often Python wakes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from relay.http.bodies import BATCH_BYTES, declared_length, read_within
from relay.http.errors import error_response
from relay.http.messages import Headers, Response, Tap, UpstreamBody, content_kind
from relay.log import log
from relay.pipeline.endpoints import surface_of

# The largest JSON answer relay reads whole before passing it on; a larger one is passed on
# as it comes, unread (its row cannot tell its usage).
WHOLE_JSON_BYTES = 16 * 1024 * 1024


class Reader(Protocol):
    """A stream read in Python, a chunk at a time (it holds the stream while it reads)."""

    async def read(self) -> bytes | None:
        """The next chunk; None at the end of the stream. Raises if the stream failed."""

    def release(self) -> None:
        """Let go of the stream, the rest unread, for another operation to take it."""

    async def cancel(self) -> None:
        """Stop the stream: its source (an upstream body: the provider's answer) is cancelled."""


class Writer(Protocol):
    """Python's end of a stream the client reads (`Streams.channel`)."""

    async def write(self, chunk: bytes) -> None:
        """Raises once the client has gone (the runtime cancelled its side)."""

    async def close(self) -> None: ...

    async def pipe(self, stream: Any) -> None:
        """Let go of the client's stream and have the runtime fill the rest of it from
        `stream`, natively, and close it; fails as Streams.pipe's pumping does."""


class Observed(NamedTuple):
    """An observed stream, once it has ended (Streams.observe)."""

    copy: bytes  # every byte that passed, and any that came after the client had gone
    first_at: float | None  # when its first chunk arrived (epoch seconds); None: it had none
    failure: str | None  # the name of the error the upstream broke off with, if it did
    client_gone: bool  # the client hung up before the end


class Streams(Protocol):
    """What the runtime does natively with body streams (no Python runs per chunk)."""

    def pipe(self, stream: Any) -> tuple[Any, Awaitable[None]]:
        """A stream for the client that the runtime fills from `stream`, and the end of that
        pumping, which fails when the client cancels its side (hangs up) or `stream` fails."""

    def reader(self, stream: Any, batch: int) -> Reader:
        """Each read waits for `batch` bytes (fewer only at the stream's end), so Python
        wakes once a batch rather than once a network chunk."""

    def read_whole(self, stream: Any) -> Awaitable[bytes]:
        """All that is left of `stream`, read natively from now on (before the result is
        awaited); fails if `stream` does."""

    def observe(
        self, stream: Any, abort: Callable[[], None], ended: Callable[[Observed], None]
    ) -> tuple[Any, Awaitable[None]]:
        """A stream for the client that the runtime fills from `stream` chunk by chunk, as
        it arrives, and the end of the observation: `ended` is called with what passed once
        `stream` has ended or the client has gone (then `abort` was called, and what arrived
        until it took effect was kept too). The runtime pipes the chunks, and JavaScript
        calls `ended` itself: Python is entered once, and no Python task waits (each wake-up
        of one costs more than the call)."""

    def channel(self) -> tuple[Any, Writer]:
        """A stream for the client that Python fills through the Writer. A native pipe: when
        the client hangs up, the runtime cancels it and the next write fails (behind a JS
        TransformStream the writes just waited: tested, the client's hang-up left no audit
        row after 30 s and the upstream kept streaming)."""


async def deliver(response: Response, path: str, streams: Streams, defer: Callable[[Awaitable[Any]], None]) -> Response:
    """The response as the client gets it, its body relay's bytes (None when empty) or a
    stream for the runtime to send; its tap fed off the client's path, in `defer`."""
    body, tap = response.body, response.tap
    if isinstance(body, UpstreamBody) and tap is not None:
        fields = Headers(response.headers)
        kind = content_kind(fields.get("content-type"))
        if kind == "events":
            return _with_body(response, _observed(body, tap, streams, defer))
        if kind != "json":
            return _with_body(response, _watched(body, tap, streams, defer))
        try:
            read = await _read_json(body, fields, streams)
        except Exception as exc:  # the upstream broke off mid-answer
            log(f"upstream body ended with {type(exc).__name__}")
            response = _broken_off(response, path)
            tap.status = response.status  # the row tells what the client got
            read = response.body
        if isinstance(read, list):
            return _with_body(response, _unread(read, body, tap, streams, defer))
        body = read
    if isinstance(body, UpstreamBody):
        return _with_body(response, body.stream)
    if hasattr(body, "__anext__"):
        return _with_body(response, _from_python(body, tap, streams, defer))
    body = bytes(body or b"")  # relay's own, or none (a bodiless upstream answer: HEAD, 204)
    if tap is not None:
        tap.feed(body)
        work = tap.close(False)
        if work is not None:
            defer(work)
    return _with_body(response, body or None)


def _with_body(response: Response, body: Any) -> Response:
    return Response(response.status, response.headers, body)


async def _read_json(upstream: UpstreamBody, fields: Headers, streams: Streams) -> bytes | list[bytes]:
    """A JSON answer read whole before it is passed on: a client waits for all of it anyway,
    and that spares the copy, pipe and watcher an observed stream needs (about 1 CPU ms a
    request, measured). Its bytes; or, when it holds more than WHOLE_JSON_BYTES, the parts
    read of it (none if its length says so at once), the rest unread. Raises if the upstream
    breaks off. One of a declared length is read in one native call; one of unknown length
    (chunked, or content-coded: the runtime decodes it, and content-length counts the coded
    bytes) a batch at a time, up to the bound."""
    size = declared_length(fields)
    if size is not None and size > WHOLE_JSON_BYTES:
        return []
    if size is not None and not _coded(fields):
        return await streams.read_whole(upstream.stream)
    reader = streams.reader(upstream.stream, BATCH_BYTES)
    parts, ended = await read_within(reader, WHOLE_JSON_BYTES)
    if not ended:
        reader.release()
        return parts
    return b"".join(parts)


def reads_whole(fields: Headers) -> bool:
    """Whether an upstream answer with these header fields is one `_read_json` reads whole
    in one native call (JSON of a declared length within the bound, not content-coded). The
    adapter's transport asks it of each answer's head and then reads such a body with the
    head, so Python wakes once for both; deliver gets its bytes."""
    size = declared_length(fields)
    kind = content_kind(fields.get("content-type"))
    return kind == "json" and size is not None and size <= WHOLE_JSON_BYTES and not _coded(fields)


def _coded(fields: Headers) -> bool:
    return (fields.get("content-encoding") or "identity").strip().lower() != "identity"


def _broken_off(response: Response, path: str) -> Response:
    """The 502 for a JSON answer that broke off while relay read it, in the client's format,
    with the answer's CORS fields (the client's browser must be allowed to read it)."""
    cors = tuple((n, v) for n, v in response.headers if n.startswith("access-control-") or n == "vary")
    return error_response(surface_of(path), 502, "the upstream API broke off its answer", cors)


def _from_python(
    chunks: AsyncGenerator[bytes, None], tap: Tap | None, streams: Streams, defer: Callable[[Awaitable[Any]], None]
) -> Any:
    """A stream that relay's own async iterator fills as the client reads it; when the
    client hangs up, the pump stops (and closing the iterator cancels the upstream)."""
    client, writer = streams.channel()

    async def pump() -> None:
        client_gone = False
        try:
            async for chunk in chunks:
                if tap is not None:
                    tap.feed(chunk)
                await writer.write(chunk)
            await writer.close()
        except Exception:  # the client went away (its side was cancelled)
            client_gone = True
        finally:
            await chunks.aclose()
            if tap is not None:
                await tap.finish(client_gone)

    defer(pump())
    return client


def _unread(
    head: list[bytes], upstream: UpstreamBody, tap: Tap, streams: Streams, defer: Callable[[Awaitable[Any]], None]
) -> Any:
    """A JSON answer too large to read whole, passed on unread: what was read of it
    (`head`), then the rest, which the runtime pipes; watched as a file is (_watched), and
    its row says its usage is unknown."""
    tap.too_large()
    if not head:
        return _watched(upstream, tap, streams, defer)
    tap.feed(b"")  # its first byte, as far as the row can tell
    client, writer = streams.channel()

    async def pump() -> None:
        try:
            while head:
                await writer.write(head.pop(0))  # each part let go of once the client has it
            await writer.pipe(upstream.stream)
        except Exception:  # the client went away, or the upstream broke off
            tap.broke_off()
            upstream.abort()  # the rest may not have been piped yet: nothing else would end it
        await tap.finish(False)

    defer(pump())
    return client


def _watched(upstream: UpstreamBody, tap: Tap, streams: Streams, defer: Callable[[Awaitable[Any]], None]) -> Any:
    """Any body but an answer's events (a file passed through, perhaps of hundreds of MB;
    a JSON answer too large to read whole), piped to the client untouched and not
    copied: it tells the row nothing but its status, when its head arrived and how it
    ended. A tee keeps for its slower copy what the faster has read, and any copy but one
    the runtime reads whole, which holds all of it, is slower than the client's (measured,
    a 256 MB file: the Worker grew by 240 MB either way; untee'd, not at all). Without a
    copy, relay cannot tell which side of a failed pipe failed (workerd's pipe passes a
    failure on to the other side whatever its options), so the row says `connection_lost`;
    either way the pipe has cancelled the upstream body."""
    tap.feed(b"")  # its first byte, as far as the row can tell: the head has arrived
    client, piping = streams.pipe(upstream.stream)

    async def watch() -> None:
        try:
            await piping
        except Exception:  # the client went away, or the upstream broke off
            tap.broke_off()
        await tap.finish(False)

    defer(watch())
    return client


def _observed(upstream: UpstreamBody, tap: Tap, streams: Streams, defer: Callable[[Awaitable[Any]], None]) -> Any:
    """An answer's events (server-sent events), passed to the client chunk by chunk as they
    come and observed for the tap on the way (Streams.observe): Python is entered once, when
    the stream has ended, whatever its length (woken per network chunk, about half a CPU ms
    each, measured, Python cost most of a stream's CPU). The copy is held until then: one
    answer's events, a few MB.

    The copy keeps what had arrived when the client left or the upstream broke off: the
    provider's final count of the output never came, and the row counts the output from what
    did (usage.py). A client gone has the upstream call aborted (the provider stops
    generating for nobody), and the row says so."""

    def ended(seen: Observed) -> None:
        tap.feed(seen.copy, seen.first_at)
        if seen.failure is not None:
            log(f"upstream body ended with {seen.failure}")
        work = tap.close(seen.client_gone)
        if work is not None:  # while the observation is deferred: the request is not over
            defer(work)

    client, done = streams.observe(upstream.stream, upstream.abort, ended)
    defer(done)
    return client


async def chunks(reader: Reader) -> AsyncGenerator[bytes, None]:
    """A stream's chunks, until it ends, for relay to read in Python (a translation).

    Closed early (the client of a translated stream went away), it cancels the stream, so
    the provider stops generating for nobody."""
    ended = False
    try:
        while True:
            chunk = await reader.read()
            if chunk is None:
                ended = True
                return
            yield chunk
    finally:
        if not ended:
            with contextlib.suppress(Exception):  # the stream had already failed
                await reader.cancel()
