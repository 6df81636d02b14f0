"""A recording TCP pass-through: what clients and a Worker said to each other, byte for byte.

`Wiretap(port)` listens on a loopback port of its own and forwards every connection to
`port`. Each read is written on at once, in both directions (a streamed answer reaches the
client event by event, as without the tap). Each direction ends as it would without the tap:
a side's close reaches the other as a close of that direction (half-close), a reset as a
reset; a client that goes away is gone for the Worker too (its next write to the client
fails, and the tap resets the Worker's connection); a Worker that stops reading a request
(it refused the rest, e.g. 431 for a huge head) still gets its answer to the client.
Connections stay open as long as both sides keep them (keep-alive), and any number may be
open at once. Everything that flowed is kept per connection (`Recording`), so that the suite
can read afterwards what the Worker sent its clients: `answers()` parses a recording with
h11 into request/answer pairs.

What a scan reads of an answer is `scanned()`: status line, header fields, trailers and
the body without its transfer coding. Credentials are left out, and only of the answers
that issue them by design: the relay key that `POST /admin/keys` issues (201, the body's
one top-level "key" field) and the tokens of sign-in's `POST /oauth/token` (200, its
"access_token" and "refresh_token"); `issued_secrets()` returns them, so the suite can add
them to the secrets it looks for everywhere else, that answer's other fields included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import zlib
from dataclasses import dataclass, field

import h11

READ_SIZE = 65536
BACKLOG = 512  # the load test opens connections in bursts
# The answers that show a new credential, once: (method, path (query and trailing "/" aside),
# status) -> the top-level fields that hold it.
ISSUING_ANSWER = ("POST", "/admin/keys", 201)
ISSUING_ANSWERS = {ISSUING_ANSWER: ("key",), ("POST", "/oauth/token", 200): ("access_token", "refresh_token")}
# A request the tap saw answered but could not read (malformed on purpose, e.g. by the
# hostile-input tests): its answer is still parsed and scanned, and never exempt.
UNREAD_REQUEST = ("GET", "/?unread-request")
# zlib's window bits for the content codings the scan undoes: a gzip file, a zlib stream
# (HTTP's "deflate"; +32 also takes a gzip file, as some servers send).
_INFLATE_WINDOWS = {"gzip": 31, "x-gzip": 31, "deflate": 47}
# h11 keeps at most this much of an incomplete head; a recording is parsed whole, so no limit.
_NO_LIMIT = 1 << 40


@dataclass
class Recording:
    """What flowed through one connection: `sent` by the client, `received` by it."""

    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)


class Wiretap:
    """A running tap in front of 127.0.0.1:`port`; a context manager, or start()/stop().
    Recordings go to `recordings` (a list of the caller's, shared by several taps, or one
    of its own)."""

    def __init__(self, port: int, recordings: list[Recording] | None = None):
        self.target = port
        self.recordings: list[Recording] = [] if recordings is None else recordings
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._tasks: set[asyncio.Task] = set()
        self._sockets: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Wiretap:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"wiretap-{self.target}", daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(self._spawn, self._accept())
        return self

    def stop(self) -> None:
        """Stop listening and close the connections still open (both sides)."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = None
        self._listener.close()

    def __enter__(self) -> Wiretap:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, coroutine) -> asyncio.Task:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sock in self._sockets:  # at once, without waiting for anything left to send
            sock.close()
        self._sockets.clear()

    async def _accept(self) -> None:
        while True:
            client, _ = await self._loop.sock_accept(self._listener)
            self._spawn(self._connection(client))

    async def _connection(self, client: socket.socket) -> None:
        recording = Recording()
        self.recordings.append(recording)
        client.setblocking(False)
        worker = socket.socket()
        worker.setblocking(False)
        pair = _Pair(client, worker, self._sockets)
        try:
            await self._loop.sock_connect(worker, ("127.0.0.1", self.target))
        except OSError:
            pair.end(reset=True)  # as a refused connection: reset, not a polite close
            return
        pair.tasks = [
            self._spawn(pair.pump(client, worker, recording.sent)),
            self._spawn(pair.pump(worker, client, recording.received)),
        ]
        await asyncio.gather(*pair.tasks, return_exceptions=True)
        pair.end(pair.reset)


class _Pair:
    """A client's connection and the tap's connection to the Worker for it, with a pump
    each way. Sockets, not asyncio's streams: a stream closes the whole connection when a
    write fails, and what the other side had already sent (a Worker's 431 for a head it
    would not read to the end) is lost; a socket can still be read."""

    def __init__(self, client: socket.socket, worker: socket.socket, sockets: set[socket.socket]):
        self.client, self.worker = client, worker
        self.tasks: list[asyncio.Task] = []
        self.reset = False
        self._sockets = sockets
        sockets.update((client, worker))

    async def pump(self, source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        """Copy `source` to `sink` read by read, recording it. At the source's end, half-close
        the sink; if the source resets, reset both. If the client goes, reset the Worker's
        connection (a client that hangs up is gone for the Worker); if the Worker stops
        reading, go on reading the client, so that it is not reset before its answer."""
        loop = asyncio.get_running_loop()
        writing = True
        try:
            while data := await loop.sock_recv(source, READ_SIZE):
                record += data
                if writing:
                    try:
                        await loop.sock_sendall(sink, data)
                    except OSError:
                        if sink is self.client:
                            return self._reset_both()
                        writing = False
        except OSError:  # the source reset its connection
            return self._reset_both()
        if writing:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def _reset_both(self) -> None:
        """Stop the other pump; `end()` resets both once neither reads a socket any more."""
        self.reset = True
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def end(self, reset: bool) -> None:
        for sock in (self.client, self.worker):
            if sock in self._sockets:
                self._sockets.discard(sock)
                _reset(sock) if reset else sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST), not an orderly end of stream."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- reading recordings ------------------------------------------------------------------


@dataclass
class Answer:
    """One answer a Worker sent a client, and the request it answered."""

    method: str
    target: str
    status: int
    head: bytes  # status line, header fields and trailers, as received
    body: bytes  # without the transfer coding (chunked) and the content codings gzip and deflate
    unread_coding: str | None = None  # content codings left on the body: the scan cannot read them

    def path(self) -> str:
        return self.target.split("?", 1)[0].rstrip("/") or "/"


def answers(recording: Recording) -> tuple[list[Answer], bytes]:
    """The answers in a recording, in order, each with its request; and what came after
    the last answer h11 could read (normally nothing), for a scan to read as it is."""
    requests = _requests(bytes(recording.sent))
    client = h11.Connection(h11.CLIENT, max_incomplete_event_size=_NO_LIMIT)
    client.receive_data(bytes(recording.received))
    client.receive_data(b"")  # the connection has ended
    found: list[Answer] = []
    while True:
        method, target = requests[len(found)] if len(found) < len(requests) else UNREAD_REQUEST
        try:
            client.send(h11.Request(method=method, target=target, headers=[("host", "wiretap")]))
            client.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            break
        answer, complete = _answer(client, method, target)
        if answer is not None:
            found.append(answer)
        if not complete or client.their_state is not h11.DONE:
            break
        try:
            client.start_next_cycle()
        except h11.LocalProtocolError:  # `connection: close`
            break
    return found, client.trailing_data[0]


def _requests(sent: bytes) -> list[tuple[str, str]]:
    """(method, target) of each request h11 can read from what a client sent, in order."""
    server = h11.Connection(h11.SERVER, max_incomplete_event_size=_NO_LIMIT)
    server.receive_data(sent)
    server.receive_data(b"")
    found = []
    while True:
        try:
            event = server.next_event()
            if isinstance(event, h11.Request):
                found.append((event.method.decode("latin-1"), event.target.decode("latin-1")))
            elif isinstance(event, h11.EndOfMessage):  # answer it, to read the next request
                server.send(h11.Response(status_code=204, headers=[]))
                server.send(h11.EndOfMessage())
                server.start_next_cycle()
            elif not isinstance(event, h11.Data):
                return found  # NEED_DATA, PAUSED, ConnectionClosed: nothing more to read
        except h11.ProtocolError:
            return found


def _answer(client: h11.Connection, method: str, target: str) -> tuple[Answer | None, bool]:
    """The next answer on `client` (None if none began) and whether it was complete."""
    status, head, body, codings = None, b"", [], []
    complete = False
    while True:
        try:
            event = client.next_event()
        except h11.RemoteProtocolError:  # e.g. the stream was cut off mid-body
            break
        if isinstance(event, (h11.InformationalResponse, h11.Response)):  # a 1xx, then the answer
            status = event.status_code
            head += b"HTTP/%s %d %s\r\n" % (event.http_version, event.status_code, event.reason)
            head += _fields(event.headers)
            codings = [
                coding.strip()
                for name, value in event.headers
                if name == b"content-encoding"
                for coding in value.decode("latin-1").lower().split(",")
            ]
        elif isinstance(event, h11.Data):
            body.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            head += _fields(event.headers)  # trailers
            complete = True
            break
        else:  # NEED_DATA, PAUSED or ConnectionClosed: nothing more to read
            break
    if status is None:
        return None, complete
    body, unread = _decode(b"".join(body), [coding for coding in codings if coding not in ("", "identity")])
    return Answer(method, target, status, head, body, unread), complete


def _fields(headers) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers.raw_items())


def _decode(body: bytes, codings: list[str]) -> tuple[bytes, str | None]:
    """`body` without its content codings (applied in the order given), as far as the scan
    can undo them (gzip and deflate), and the codings left, if any. A body cut off mid-way
    gives what it holds."""
    while codings and codings[-1] in _INFLATE_WINDOWS:
        try:
            body = _inflate(body, _INFLATE_WINDOWS[codings[-1]])
        except zlib.error:
            break
        codings = codings[:-1]
    return body, ", ".join(codings) or None


def _inflate(data: bytes, window_bits: int) -> bytes:
    found = []
    while data:  # a gzip body may hold several members, one after the other
        stream = zlib.decompressobj(window_bits)
        found.append(stream.decompress(data))
        data = stream.unused_data
    return b"".join(found)


class _Pairs(list):
    """A JSON object as the list of its (name, value) pairs, duplicates kept."""


def _object(body: bytes) -> _Pairs | None:
    try:
        parsed = json.loads(body, object_pairs_hook=_Pairs)
    except ValueError:
        return None
    return parsed if isinstance(parsed, _Pairs) else None


def issued_secrets(answer: Answer) -> list[str]:
    """The credentials this answer issues: only of an issuing answer (ISSUING_ANSWERS) whose
    body is a JSON object with each of its credential fields once, a string."""
    names = ISSUING_ANSWERS.get((answer.method, answer.path(), answer.status))
    pairs = _object(answer.body) if names else None
    if not names or pairs is None:
        return []
    found = []
    for name in names:
        values = [value for field, value in pairs if field == name]
        if len(values) != 1 or not isinstance(values[0], str):
            return []
        found.append(values[0])
    return found


def issued_key(answer: Answer) -> str | None:
    """The relay key this answer issues: only an answer to `POST /admin/keys` with status
    201 whose body is a JSON object with exactly one top-level "key" field, a string."""
    if (answer.method, answer.path(), answer.status) != ISSUING_ANSWER:
        return None
    found = issued_secrets(answer)
    return found[0] if found else None


def scanned(answer: Answer) -> bytes:
    """What a scan for secrets reads of an answer: its head and body, except the credentials
    an issuing answer shows (its body is then read as the JSON text of every other field,
    every string unescaped, which finds whatever the raw body would)."""
    if not issued_secrets(answer):
        return answer.head + answer.body
    names = ISSUING_ANSWERS[(answer.method, answer.path(), answer.status)]
    others = [[name, value] for name, value in _object(answer.body) if name not in names]
    return answer.head + json.dumps(others, ensure_ascii=False).encode()
