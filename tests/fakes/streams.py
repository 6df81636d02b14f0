"""A CPython stand-in for the runtime's stream operations (relay.pipeline.deliver.Streams).

`Upstream` is a body (an upstream answer's, or a request's): its chunks, then how it ends.
`FakeStreams` pipes, observes and reads such bodies as workerd would (a pipe, a whole read or
an observation goes on by itself, as a task, like the runtime's native pumping), with a client
that reads everything or hangs up after some chunks, and counts `wakeups`: how many times
Python resumed from awaiting one of its operations (what costs a Worker CPU per stream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from relay.http.bodies import declared_length, request_body
from relay.http.messages import Headers, UpstreamBody
from relay.pipeline.deliver import Observed


class BrokenOff(Exception):
    """The upstream connection broke off (a JsException in the Worker)."""


class Aborted(Exception):
    """The upstream call was aborted (its AbortController)."""


class ClientGone(Exception):
    """The client cancelled its side of the stream (it hung up)."""


class Upstream:
    """An upstream body: `chunks`, `gap` seconds apart, then `ending`: "end" (it completes),
    "break" (it fails) or "hang" (it stays open until aborted)."""

    def __init__(self, chunks: list[bytes], ending: str = "end", gap: float = 0.0):
        self.chunks, self.ending, self.gap = list(chunks), ending, gap
        self.aborted = False
        self.cancelled = False
        self._stopped: asyncio.Event | None = None

    def body(self) -> UpstreamBody:
        return UpstreamBody(FakeStream(self), self.abort)

    def abort(self) -> None:
        self.aborted = True
        self._stop().set()

    def _stop(self) -> asyncio.Event:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        return self._stopped

    async def chunk(self, index: int) -> bytes | None:
        """The index-th chunk once it has arrived; None past the last if the body ended."""
        if self.gap:
            await asyncio.sleep(self.gap)
        else:
            await asyncio.sleep(0)
        if self.aborted:
            raise Aborted()
        if index < len(self.chunks):
            return self.chunks[index]
        if self.ending == "end":
            return None
        if self.ending == "break":
            raise BrokenOff()
        await self._stop().wait()
        raise Aborted()


class FakeStream:
    """One reading of an Upstream from chunk `position` on; like a JS stream, it can be
    taken by one operation at a time (a reader, a pipe, an observation, a whole read)."""

    def __init__(self, source: Upstream, position: int = 0):
        self.source, self.position = source, position
        self.taken = False

    def take(self) -> None:
        assert not self.taken, "a stream taken by two operations at once"
        self.taken = True

    async def next(self) -> bytes | None:
        chunk = await self.source.chunk(self.position)
        if chunk is not None:
            self.position += 1
        return chunk


class Client:
    """What the client got: `received` chunks, when each came (`received_at`, epoch seconds),
    and whether its stream `ended` or `failed`. With `hangs_up_after`, it cancels its side
    after that many chunks."""

    def __init__(self, hangs_up_after: int | None = None):
        self.hangs_up_after = hangs_up_after
        self.received: list[bytes] = []
        self.received_at: list[float] = []
        self.ended = self.failed = self.gone = False

    def take(self, chunk: bytes, at: float | None = None) -> None:
        if self.gone:
            raise ClientGone()
        self.received.append(chunk)
        self.received_at.append(time.time() if at is None else at)
        if self.hangs_up_after is not None and len(self.received) >= self.hangs_up_after:
            self.gone = True


class FakeReader:
    """A reader; with `batch`, each read gives at least that many bytes, fewer only at the
    stream's end, after which it gives None without a wake-up (as the adapter's does)."""

    def __init__(self, stream: FakeStream, streams: FakeStreams, batch: int = 0):
        self.stream, self.streams, self.batch = stream, streams, batch
        self._ended = False

    async def read(self) -> bytes | None:
        if not self.batch:
            return await self.streams.woken(self.stream.next())
        if self._ended:
            return None
        return await self.streams.woken(self._batch())

    async def _batch(self) -> bytes | None:
        parts: list[bytes] = []
        while sum(map(len, parts)) < self.batch:
            chunk = await self.stream.next()
            if chunk is None:
                self._ended = True
                break
            parts.append(chunk)
        return b"".join(parts) if parts else None

    def release(self) -> None:
        self.stream.taken = False

    async def cancel(self) -> None:
        self.stream.source.cancelled = True


class FakeWriter:
    def __init__(self, client: Client, streams: FakeStreams):
        self.client, self.streams = client, streams

    async def write(self, chunk: bytes) -> None:
        await self.streams.woken(asyncio.sleep(0))
        self.client.take(chunk)

    async def close(self) -> None:
        await self.streams.woken(asyncio.sleep(0))
        self.client.ended = True

    async def pipe(self, stream: FakeStream) -> None:
        stream.take()
        await self.streams.woken(self.streams._pump(stream, self.client))


class FakeStreams:
    """relay.pipeline.deliver.Streams on CPython. `clients`: every stream handed out for a client
    (pipe, channel, observe), each a `Client` that hangs up after `hangs_up_after` chunks if set."""

    def __init__(self, hangs_up_after: int | None = None):
        self.hangs_up_after = hangs_up_after
        self.wakeups = 0
        self.calls = 0  # calls into Python from JavaScript (Streams.observe's `ended`)
        self.observed = 0
        self.whole_reads = 0
        self.clients: list[Client] = []

    async def woken(self, work: Any) -> Any:
        """`work`, awaited for the core: Python wakes once when it is done."""
        try:
            return await work
        finally:
            self.wakeups += 1

    def pipe(self, stream: FakeStream) -> tuple[Client, Any]:
        stream.take()
        client = self._client()
        return client, self.woken(asyncio.ensure_future(self._pump(stream, client)))

    def reader(self, stream: FakeStream, batch: int) -> FakeReader:
        stream.take()
        return FakeReader(stream, self, batch)

    def read_whole(self, stream: FakeStream) -> Any:
        stream.take()
        self.whole_reads += 1
        return self.woken(asyncio.ensure_future(self._drain(stream)))

    def observe(
        self, stream: FakeStream, abort: Callable[[], None], ended: Callable[[Observed], None]
    ) -> tuple[Client, Any]:
        stream.take()
        self.observed += 1
        client = self._client()

        async def observation() -> None:
            seen = await self._observe(stream, client, abort)
            self.calls += 1  # JavaScript calls into Python: no Python task waited
            ended(seen)

        return client, asyncio.ensure_future(observation())

    def channel(self) -> tuple[Client, FakeWriter]:
        client = self._client()
        return client, FakeWriter(client, self)

    def _client(self) -> Client:
        client = Client(self.hangs_up_after)
        self.clients.append(client)
        return client

    @staticmethod
    async def _pump(stream: FakeStream, client: Client) -> None:
        """The runtime's pipe (no Python of relay's runs here): it fails when the client
        hangs up, or when what it reads fails."""
        try:
            while (chunk := await stream.next()) is not None:
                client.take(chunk)
                if client.gone:
                    raise ClientGone()
        except (BrokenOff, Aborted):
            client.failed = True
            raise
        client.ended = True

    @staticmethod
    async def _drain(stream: FakeStream) -> bytes:
        parts = []
        while (chunk := await stream.next()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    @staticmethod
    async def _observe(stream: FakeStream, client: Client, abort: Callable[[], None]) -> Observed:
        """native_streams.mjs's observe (no Python of relay's runs here): each chunk passed to
        the client and kept; the client gone, the call aborted and what came until then kept."""
        parts: list[bytes] = []
        first_at: float | None = None
        failure: str | None = None
        try:
            while (chunk := await stream.next()) is not None:
                arrived = time.time()
                first_at = arrived if first_at is None else first_at
                parts.append(chunk)
                if not client.gone:
                    client.take(chunk, arrived)
                    if client.gone:
                        abort()
        except (BrokenOff, Aborted) as exc:
            failure = None if client.gone else type(exc).__name__
            client.failed = not client.gone
        else:
            client.ended = True
        return Observed(b"".join(parts), first_at, failure, client.gone)


def read_body(body: bytes, headers: Headers | None = None) -> Callable[[int], Awaitable[bytes | None]]:
    """A Request's read_body for `body`: relay's own reading of a request body
    (bodies.request_body), over these stand-ins."""
    stream = FakeStream(Upstream([body])) if body else None

    def read(limit: int) -> Awaitable[bytes | None]:
        return request_body(stream, declared_length(headers or Headers()), limit, FakeStreams())

    return read
