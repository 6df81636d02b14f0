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

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Protocol

from relay.http.bodies import BATCH_BYTES, declared_length, read_within
from relay.http.errors import error_response
from relay.http.messages import Headers, Response, Tap, UpstreamBody, content_kind
from relay.log import log
from relay.pipeline.endpoints import surface_of

# The largest JSON answer relay reads whole before passing it on; a larger one is passed on
# as it comes, unread (its row cannot tell its usage).
WHOLE_JSON_BYTES = 16 * 1024 * 1024
# What the tap reads of an event stream's copy, at most, before the runtime collects the rest.
FIRST_EVENT_BYTES = 64 * 1024
# How long a failed pipe waits for the tap's copy to fail too before it blames the client.
UPSTREAM_ERROR_GRACE_SECONDS = 0.1


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


class Streams(Protocol):
    """What the runtime does natively with body streams (no Python runs per chunk)."""

    def tee(self, stream: Any) -> tuple[Any, Any]:
        """Two streams that each give all of `stream`."""

    def pipe(self, stream: Any) -> tuple[Any, Awaitable[None]]:
        """A stream for the client that the runtime fills from `stream`, and the end of that
        pumping, which fails when the client cancels its side (hangs up) or `stream` fails."""

    def reader(self, stream: Any, batch: int = 0) -> Reader:
        """With `batch`, each read waits for that many bytes (fewer only at the stream's
        end), so Python wakes once a batch rather than once a network chunk."""

    def read_whole(self, stream: Any) -> Awaitable[bytes]:
        """All that is left of `stream`, read natively from now on (before the result is
        awaited); fails if `stream` does."""

    def collect(self, stream: Any) -> Awaitable[tuple[bytes, str | None]]:
        """All that is left of `stream`, read natively from now on (before the result is
        awaited), and None if it ended, else the name of the error it failed with: what it
        gave until then is kept (an upstream body aborted for a client gone: what the
        provider had sent up to the cut). Through a native pipe of its own, for a tee
        branch: one read whole straight from a tee held its sibling, the client's copy,
        back (tested: the first of a paced stream's events reached the client 100 ms late)."""

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
    coded = (fields.get("content-encoding") or "identity").strip().lower() != "identity"
    if size is not None and not coded:
        return await streams.read_whole(upstream.stream)
    reader = streams.reader(upstream.stream, BATCH_BYTES)
    parts, ended = await read_within(reader, WHOLE_JSON_BYTES)
    if not ended:
        reader.release()
        return parts
    return b"".join(parts)


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
    """An answer's events (server-sent events), tee'd: one copy piped to the client
    untouched, the other observed for the tap (see _observe)."""
    to_client, copy = streams.tee(upstream.stream)
    client, piping = streams.pipe(to_client)
    defer(_observe(copy, piping, upstream, tap, streams))
    return client


async def _observe(copy: Any, piping: Awaitable[None], upstream: UpstreamBody, tap: Tap, streams: Streams) -> None:
    """Feed the tap its copy of an answer's events, waking Python about three times
    whatever the stream's length: its first event (when the answer began, for the row, and
    an Anthropic stream's message_start, with the input's usage), the end of the client's
    pipe, and the rest of the copy, which the runtime collects meanwhile through a native
    pipe (see Streams.collect). Python woken per network chunk (about half a CPU ms each,
    measured), or every so often, cost most of a stream's CPU. The rest is held until the
    stream ends: one answer's events, a few MB.

    If the client's pipe fails while the copy goes on, the client has gone: the upstream
    call is aborted (the provider stops generating for nobody; a copy being collected
    cannot be cancelled) and the row says so. Whether the client left or the upstream broke
    off, the copy keeps what had arrived up to the cut: the provider's final count of the
    output never came, and the row counts the output from what did (usage.py)."""
    client_gone = False
    rest: Awaitable[tuple[bytes, str | None]] | None = None
    failure: str | None = None
    try:
        reader = streams.reader(copy)
        seen = b""
        while not _has_an_event(seen) and len(seen) < FIRST_EVENT_BYTES:
            chunk = await reader.read()
            if chunk is None:
                break
            tap.feed(chunk)
            seen += chunk
        reader.release()
        rest = streams.collect(copy)
    except Exception as exc:  # the upstream broke off before its first event was whole
        failure = type(exc).__name__
    try:
        await piping
    except Exception:  # the client went away, or the upstream broke off
        if rest is not None:
            rest = asyncio.ensure_future(rest)
            if not (await asyncio.wait({rest}, timeout=UPSTREAM_ERROR_GRACE_SECONDS))[0]:
                client_gone = True
                upstream.abort()
    if rest is not None:
        received, failure = await rest
        tap.feed(received)
    if failure is not None and not client_gone:
        log(f"upstream body ended with {failure}")
    await tap.finish(client_gone)


def _has_an_event(data: bytes) -> bool:
    """Whether a server-sent event stream's start holds a whole event (a blank line ends one)."""
    return b"\n\n" in data or b"\r\n\r\n" in data


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
