"""Bodies relay holds in memory, each read no further than just past its bound: a request's
(RELAY_MAX_BODY_BYTES, or the admin API's own) and an upstream JSON answer's
(deliver.WHOLE_JSON_BYTES).

A body of a declared length within its bound is read whole, in one native call. One of
unknown length (chunked; or an answer in a content coding, which the runtime decodes, so
its content-length counts the coded bytes) is read a batch at a time, and reading stops
once it holds more than the bound. Read whole first, a 100 MB chunked request body had the
Worker grow by 294 MB, and a 40 MB chunked embeddings answer by 235 MB; now by 18 and 28
(tests/e2e/test_body_bounds.py; production isolates have 128 MB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.http.errors import Refused
from relay.http.messages import Headers, Request, Response, Transport, whole_number

if TYPE_CHECKING:  # deliver imports this module
    from relay.pipeline.deliver import Reader, Streams

# What one read of a body of unknown length waits for (fewer bytes only at its end): Python
# wakes once a batch, about half a CPU ms each, rather than once a network chunk (4 KB from
# a client: measured, 2,073 wake-ups for 8 MB read chunk by chunk, 9 a MB at a time).
BATCH_BYTES = 1024 * 1024


def declared_length(headers: Headers) -> int | None:
    """The body's length its content-length declares, or None (none, or not ASCII digits)."""
    return whole_number((headers.get("content-length") or "").strip())


def too_large(limit: int, whose: str, headers: tuple[tuple[str, str], ...] = ()) -> Refused:
    """The 413 for a request body over `limit` bytes, `whose` limit it is ("relay's")."""
    return Refused(413, f"request body exceeds {whose} limit of {limit} bytes", headers)


async def read_bounded(request: Request, limit: int, whose: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The request's body; Refused (413) when it holds more than `limit` bytes (one declared
    larger is not read at all: request_body)."""
    body = await request.read_body(limit)
    if body is None:
        raise too_large(limit, whose, headers)
    return body


async def read_within(reader: Reader, limit: int) -> tuple[list[bytes], bool]:
    """What `reader` gives until its stream ends (True), or until it holds more than `limit`
    bytes (False: the stream goes on, and the reader still holds it)."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        part = await reader.read()
        if part is None:
            return parts, True
        parts.append(part)
        size += len(part)
    return parts, False


async def request_body(stream: Any, declared: int | None, limit: int, streams: Streams) -> bytes | None:
    """A request's body (`stream`, None when it has none) as bytes, or None when it holds
    more than `limit` bytes. One declared too large is not read at all; one of unknown length
    is cancelled as soon as it is over the limit (the client still gets relay's answer:
    tested with a 100 MB chunked upload)."""
    if stream is None:
        return b""
    if declared is not None:
        return await streams.read_whole(stream) if declared <= limit else None
    reader = streams.reader(stream, BATCH_BYTES)
    parts, ended = await read_within(reader, limit)
    if not ended:
        await reader.cancel()
        return None
    return b"".join(parts)


async def whole_body(transport: Transport, answer: Response) -> bytes:
    """All of an upstream answer's body, as bytes (b"" for none): for answers relay reads
    whole whatever their size, as a provider's JSON it translates or a stream it converts."""
    if answer.body is None or isinstance(answer.body, bytes):
        return answer.body or b""
    return b"".join([chunk async for chunk in transport.chunks(answer.body)])


async def answer_body(transport: Transport, answer: Response, limit: int) -> bytes | None:
    """The body of an upstream answer relay reads itself (an IdP's JSON, a model list), as
    bytes, or None when it holds more than `limit` bytes (the rest is then discarded)."""
    if answer.body is None or isinstance(answer.body, bytes):
        return answer.body or b""
    parts, size = [], 0
    async for chunk in transport.chunks(answer.body):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            await transport.discard(answer.body)
            return None
    return b"".join(parts)
