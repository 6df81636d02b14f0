"""Workers adapter: runtime objects in, plain Python to relay's core, a streaming Response out.

This is the only module that imports the runtime (js, pyodide, workers). The upstream
body stream is handed back to the runtime untouched, so SSE reaches the client chunk by
chunk with no Python code on the byte path.
"""

import asyncio
import dataclasses
import json

from js import (JSON, URL, AbortController, Array, Date, IdentityTransformStream, Object, clearTimeout,
                fetch, setTimeout)
from js import Headers as JsHeaders
from js import Response as JsResponse
from pyodide.ffi import to_js

try:
    from pyodide.ffi import JsNull
except ImportError:  # Pyodide before 0.28 (the pinned runtime's 0.26) hands JS null over as None
    _ABSENT = (type(None),)
else:
    _ABSENT = (type(None), JsNull)

from relay.app import handle
from relay.errors import error_response
from relay.http import Headers, Request, Response, UpstreamTimeout, UpstreamUnreachable
from relay.limits import RPM_PREFIX
from relay.routes import surface_of
from relay.services import IsolateState, Services


def _missing(value):
    """Whether a JS value is absent (null or undefined), as every test of one here asks.
    undefined arrives as None; null arrives as None up to Pyodide 0.26 and as
    pyodide.ffi.jsnull (a JsNull, which `is None` misses) from 0.28: e.g. the body of a GET
    request, of a 204 answer, or a KV key that is not there."""
    return isinstance(value, _ABSENT)


def _js_headers(pairs):
    return JsHeaders.new(to_js([[name, value] for name, value in pairs]))


_array_from = getattr(Array, "from")  # `from` is a keyword in Python


def _pairs(js_headers):
    # One conversion of the whole list: iterating a JS Headers from Python pays a crossing
    # per pair and per item.
    return [(name, value) for name, value in _array_from(js_headers).to_py()]


class FetchTransport:
    """The core's Transport, over the runtime's fetch()."""

    async def send(self, method, url, headers, body, timeout=None):
        abort = AbortController.new()
        init = {"method": method, "headers": _js_headers(headers), "signal": abort.signal}
        if body is not None:
            init["body"] = to_js(body)
        # The runtime's own timer aborts the call: no Python task or timer per request.
        timer = setTimeout(abort.abort.bind(abort), timeout * 1000) if timeout else None
        try:
            answer = await fetch(url, _js_object(init))
        except Exception as exc:  # a JsException: aborted by the timer, or DNS, connect, TLS, reset
            if abort.signal.aborted:
                raise UpstreamTimeout(f"no answer within {timeout}s") from None
            raise UpstreamUnreachable(type(exc).__name__) from None
        finally:
            if timer is not None:
                clearTimeout(timer)
        body = None if _missing(answer.body) else UpstreamBody(answer.body, abort)
        return Response(answer.status, _pairs(answer.headers), body)

    async def discard(self, body):
        if body is not None:
            await body.stream.cancel()

    def chunks(self, body):
        return _chunks(body.stream.getReader())


class UpstreamBody:
    """An upstream answer's body stream, and the controller of its fetch: aborting it
    after the answer has begun errors the body and cancels the provider's request (a
    stream whose copy is read whole by the runtime cannot be cancelled otherwise)."""

    __slots__ = ("stream", "abort")

    def __init__(self, stream, abort):
        self.stream, self.abort = stream, abort


async def _chunks(reader):
    """A JS stream reader's chunks as bytes, until the stream ends (or is cancelled).

    Closed early (the client of a translated stream went away), it cancels the upstream
    body, so the provider stops generating for nobody."""
    ended = False
    try:
        while True:
            step = await reader.read()
            if step.done:
                ended = True
                return
            yield step.value.to_bytes()
    finally:
        if not ended:
            try:
                await reader.cancel()
            except Exception:  # a JsException: the stream had already failed
                pass


def _js_object(mapping):
    return to_js(mapping, dict_converter=Object.fromEntries)


class D1Database:
    """The core's Database, over a D1 binding."""

    def __init__(self, binding):
        self._binding = binding

    def _statement(self, sql, params):
        statement = self._binding.prepare(sql)
        if not params:
            return statement
        # JSON.parse yields a JS array holding real nulls (to_js would turn None into undefined).
        return statement.bind.apply(statement, JSON.parse(json.dumps(list(params))))

    async def all(self, sql, params=()):
        return (await self._statement(sql, params).all()).results.to_py()

    async def run(self, sql, params=()):
        await self._statement(sql, params).run()


class WorkersKV:
    """The core's KeyValue, over a KV namespace binding."""

    def __init__(self, binding):
        self._binding = binding

    async def get(self, key):
        value = await self._binding.get(key)
        return None if _missing(value) else value

    async def put(self, key, value, ttl_seconds):
        # KV refuses expirations shorter than 60 s.
        await self._binding.put(key, value, _js_object({"expirationTtl": max(60, int(ttl_seconds))}))


class RateLimitBinding:
    """The core's RateLimiter, over a Workers Rate Limiting binding."""

    def __init__(self, binding):
        self._binding = binding

    async def allow(self, key):
        return bool((await self._binding.limit(_js_object({"key": key}))).success)


class _Isolate:
    """What lives as long as the isolate (class attributes, like module globals): the
    bindings, read from env on the first request, and the core's IsolateState (which
    keeps the settings, read through _Vars on the first request). A Worker's vars,
    secrets and bindings change only with a new deployment, which starts new isolates, so
    reading them again on every request (a JS crossing per name) would be wasted work."""

    services = None

    @classmethod
    def load(cls, env):
        if cls.services is None:
            bindings = set(Object.keys(env).to_py())
            limiters = {int(name[len(RPM_PREFIX):]): RateLimitBinding(getattr(env, name))
                        for name in bindings if name.startswith(RPM_PREFIX) and name[len(RPM_PREFIX):].isdigit()}
            cls.services = Services(
                transport=FetchTransport(),
                db=D1Database(env.DB) if "DB" in bindings else None,
                kv=WorkersKV(env.RELAY_KV) if "RELAY_KV" in bindings else None,
                limiters=limiters,
                state=IsolateState(),
                clock=lambda: Date.now() / 1000,
            )
        return cls.services


class _Vars:
    """The Worker's env as the core reads its settings (config.settings_for): a var's or
    secret's value by name, or None. The core asks only for relay's own names and the
    secrets RELAY_ROUTES names, once per isolate."""

    __slots__ = ("_env",)

    def __init__(self, env):
        self._env = env

    def get(self, name, default=None):
        return getattr(self._env, name, default)


def _services(env, ctx):
    return dataclasses.replace(_Isolate.load(env), defer=lambda work: ctx.waitUntil(to_js(work)))


def _to_request(js_request):
    url = URL.new(js_request.url)

    async def read_body():
        return (await js_request.arrayBuffer()).to_bytes()

    return Request(
        method=js_request.method,
        path=url.pathname,
        query=url.search[1:],
        headers=Headers(_pairs(js_request.headers)),
        read_body=read_body,
    )


async def _to_js_response(response, services, path):
    """The core's Response as the runtime's, its body streamed and, if it has a tap,
    observed off the client's path (a JSON answer is read whole first: see _whole_json)."""
    body, tap = response.body, response.tap
    fields = Headers(response.headers)
    kind = (fields.get("content-type") or "").lower()
    if tap is not None and isinstance(body, UpstreamBody) and _whole_json(kind, fields.get("content-length")):
        try:
            body = (await JsResponse.new(body.stream).arrayBuffer()).to_bytes()
        except Exception as exc:  # a JsException: the upstream broke off mid-answer
            print(f"relay: upstream body ended with {type(exc).__name__}")
            cors = [(n, v) for n, v in response.headers if n.startswith("access-control-") or n == "vary"]
            response = error_response(surface_of(path), 502, "the upstream API broke off its answer",
                                      tuple(cors))
            tap.status = response.status  # the row tells what the client got
            body = response.body
    if isinstance(body, (bytes, bytearray)):
        if tap is not None:
            tap.feed(bytes(body))
            work = tap.close(False)
            if work is not None:
                services.defer(work)
        body = to_js(body) if body else None
    elif hasattr(body, "__anext__"):
        body = _from_python(body, tap, services)
    elif isinstance(body, UpstreamBody):
        body = body.stream if tap is None else _observed(body, tap, services, kind)
    return JsResponse.new(body, status=response.status, headers=_js_headers(response.headers))


# The largest JSON answer relay reads whole before passing it on.
WHOLE_JSON_BYTES = 16 * 1024 * 1024


def _whole_json(content_type, content_length):
    """Whether an upstream answer is a JSON document of a bounded size. Such an answer is
    read whole, natively, before it is passed on: a client waits for all of it anyway, and
    that spares the copy, pipe and watcher an observed stream needs (about 1 CPU ms a
    request, measured). Server-sent events are never read whole."""
    size = (content_length or "").strip()
    return ("json" in content_type and "event-stream" not in content_type
            and (not size.isdigit() or int(size) <= WHOLE_JSON_BYTES))


def _from_python(chunks, tap, services):
    """A stream that relay's own async iterator fills as the client reads it.

    An IdentityTransformStream, like the client's pipe in _observed: when the client hangs
    up, the runtime cancels it and the next write fails, so the pump stops (and cancels the
    upstream). Behind a JS TransformStream the writes just waited: tested, the client's
    hang-up left no audit row after 30 s and the upstream kept streaming."""
    pipe = IdentityTransformStream.new()
    writer = pipe.writable.getWriter()

    async def pump():
        client_gone = False
        try:
            async for chunk in chunks:
                if tap is not None:
                    tap.feed(chunk)
                await writer.write(to_js(chunk))
            await writer.close()
        except Exception:  # a JsException: the client went away (its side was cancelled)
            client_gone = True
        finally:
            await chunks.aclose()
            if tap is not None:
                await tap.finish(client_gone)

    services.defer(pump())
    return pipe.readable


# How long a failed pipe waits for the tap's copy to fail too before it blames the client.
UPSTREAM_ERROR_GRACE_SECONDS = 0.1


def _observed(upstream, tap, services, content_type):
    """The upstream stream for the client, untouched, observed for the tap.

    The client's copy goes through a native pipe (an IdentityTransformStream: workerd pumps
    it without running JavaScript per chunk, unlike a TransformStream), whose promise fails
    when the client cancels (disconnects) or the upstream breaks off. An answer's events
    (server-sent events) are tee'd for the tap: see _observe.

    Any other body (a file passed through, perhaps of hundreds of MB; a JSON answer too
    large to be read whole) tells the row nothing but its status, when its head arrived
    and how it ended, so it is not tee'd: a tee keeps for its slower copy what the faster
    has read, and any copy but one the runtime reads whole, which holds all of it, is
    slower than the client's (measured, a 256 MB file: the Worker grew by 240 MB either
    way; untee'd, not at all). Without a copy, relay cannot tell which side of a failed
    pipe failed (workerd's pipe passes a failure on to the other side whatever its
    options), so the row says `connection_lost`; either way the pipe has cancelled the
    upstream body."""
    pipe = IdentityTransformStream.new()
    if not content_type.startswith("text/event-stream"):
        tap.feed(b"")  # its first byte, as far as the row can tell: the head has arrived
        services.defer(_watch(upstream.stream.pipeTo(pipe.writable), tap))
        return pipe.readable
    to_client, to_tap = upstream.stream.tee()
    piping = to_client.pipeTo(pipe.writable)
    services.defer(_observe(to_tap, piping, upstream.abort, tap))
    return pipe.readable


async def _watch(piping, tap):
    try:
        await piping
    except Exception:  # a JsException: the client went away, or the upstream broke off
        tap.broke_off()
    await tap.finish(False)


# What the tap reads of an event stream's copy, at most, before the runtime reads the rest whole.
FIRST_EVENT_BYTES = 64 * 1024


async def _observe(copy, piping, abort, tap):
    """Feed the tap its copy of an answer's events, waking Python about three times
    whatever the stream's length: its first event (when the answer began, for the row, and
    an Anthropic stream's message_start, with the input's usage), the end of the client's
    pipe, and the rest of the copy, which the runtime reads whole meanwhile through a
    native pipe (read whole straight from a tee, it held the client's copy back: tested,
    the first of a paced stream's events reached the client 100 ms late). Python woken per
    network chunk (about half a CPU ms each, measured), or every so often, cost most of a
    stream's CPU. The rest is held until the stream ends: one answer's events, a few MB.

    If the client's pipe fails while the copy goes on, the client has gone: the upstream
    call is aborted (the provider stops generating for nobody; a copy being read whole
    cannot be cancelled) and the row says so. If the upstream breaks off, the copy fails
    too, and what it had not given the tap is lost; usage sits in a stream's first and
    last events, so the row keeps what the first event told."""
    client_gone = False
    try:
        reader = copy.getReader()
        seen = b""
        while not _has_an_event(seen) and len(seen) < FIRST_EVENT_BYTES:
            step = await reader.read()
            if step.done:
                break
            chunk = step.value.to_bytes()
            tap.feed(chunk)
            seen += chunk
        reader.releaseLock()
        rest = JsResponse.new(copy.pipeThrough(IdentityTransformStream.new())).arrayBuffer()
        try:
            await piping
        except Exception:  # a JsException: the client went away, or the upstream broke off
            rest = asyncio.ensure_future(rest)
            if not (await asyncio.wait({rest}, timeout=UPSTREAM_ERROR_GRACE_SECONDS))[0]:
                client_gone = True
                abort.abort()
        tap.feed((await rest).to_bytes())
    except Exception as exc:  # the upstream broke off mid-body, or was aborted for a client gone
        if not client_gone:
            print(f"relay: upstream body ended with {type(exc).__name__}")
    await tap.finish(client_gone)


def _has_an_event(data):
    """Whether a server-sent event stream's start holds a whole event (a blank line ends one)."""
    return b"\n\n" in data or b"\r\n\r\n" in data


async def _discard_unread_body(js_request):
    """Answering before the client has sent its whole body (401, 404, 413 by
    content-length) makes HTTP/1.1 peers see a reset instead of relay's answer."""
    if _missing(js_request.body) or js_request.bodyUsed:
        return
    reader = js_request.body.getReader()
    while not (await reader.read()).done:
        pass


async def serve(js_request, env, ctx):
    services = _services(env, ctx)
    request = _to_request(js_request)
    response = await handle(request, _Vars(env), services)
    await _discard_unread_body(js_request)
    return await _to_js_response(response, services, request.path)


# The pinned local runtime calls a top-level on_fetch; current runtimes (compatibility
# dates from 2025-08) call Default.fetch from the `workers` module. Both reach serve().
on_fetch = serve

try:
    from workers import WorkerEntrypoint
except ImportError:
    pass
else:
    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return await serve(getattr(request, "js_object", request), self.env, self.ctx)
