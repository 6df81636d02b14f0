"""Workers adapter: runtime objects in, plain Python to relay's core, a streaming Response out.

This is the only module that imports the runtime (js, pyodide, workers). It wraps and
decides nothing: how an answer's body reaches the client is relay.pipeline.deliver's, over the
native stream operations lent here (JsStreams), so SSE reaches the client chunk by chunk
with no Python code on the byte path: what must run around a stream is JavaScript, in
native_streams.mjs beside this module, and it leaves each chunk to the runtime's pipes.
"""

import json
import traceback

from js import (
    JSON,
    URL,
    AbortController,
    Array,
    Date,
    IdentityTransformStream,
    Object,
    Uint8Array,
)
from js import Headers as JsHeaders
from js import Response as JsResponse
from pyodide.ffi import JsNull, create_once_callable, create_proxy, to_js
from workers import WorkerEntrypoint, import_from_javascript

from relay.http.bodies import declared_length, request_body
from relay.http.errors import error_response
from relay.http.messages import Headers, Request, Response, UpstreamBody, UpstreamTimeout, UpstreamUnreachable
from relay.limits.key_limits import RPM_PREFIX
from relay.log import log
from relay.pipeline import deliver
from relay.pipeline.app import handle
from relay.pipeline.endpoints import surface_of
from relay.services import IsolateState, Services, unlocked
from relay.usage import scheduled


def _missing(value):
    """Whether a JS value is absent (null or undefined), as every test of one here asks.
    undefined arrives as None, null as pyodide.ffi.jsnull (a JsNull, which `is None`
    misses): e.g. the body of a GET request, of a 204 answer, or a KV key that is not there."""
    return value is None or isinstance(value, JsNull)


def _js_headers(pairs):
    return JsHeaders.new(to_js([[name, value] for name, value in pairs]))


_array_from = getattr(Array, "from")  # `from` is a keyword in Python


def _pairs(js_headers):
    # One conversion of the whole list: iterating a JS Headers from Python pays a crossing
    # per pair and per item.
    return [(name, value) for name, value in _array_from(js_headers).to_py()]


class FetchTransport:
    """The core's Transport, over the runtime's fetch() (native_streams.mjs's `send`). An
    answer deliver.reads_whole says is read whole comes with its body as bytes."""

    async def send(self, method, url, headers, body, timeout=None):
        abort = AbortController.new()
        init = {"method": method, "headers": _js_headers(headers), "signal": abort.signal}
        if body is not None:
            init["body"] = to_js(body)
        try:
            # The runtime's own timer aborts the call: no Python task or timer per request.
            answer, whole, failed = await _Isolate.native_streams.send(
                url, _js_object(init), abort, (timeout or 0) * 1000, _Isolate.reads_whole
            )
        except Exception as exc:  # a JsException: aborted by the timer, or DNS, connect, TLS, reset
            if abort.signal.aborted:
                raise UpstreamTimeout(f"no answer within {timeout}s") from None
            raise UpstreamUnreachable(type(exc).__name__) from None
        stop = abort.abort.bind(abort)
        if not 200 <= answer.status <= 599:  # the runtime's Response cannot pass such a status on
            stop()
            raise UpstreamUnreachable(f"status {answer.status}")
        if not _missing(whole):
            body = whole.to_bytes()
        elif not _missing(failed):
            body = UpstreamBody(failed, stop)
        else:
            body = None if _missing(answer.body) else UpstreamBody(answer.body, stop)
        return Response(answer.status, _pairs(answer.headers), body)

    async def discard(self, body):
        if isinstance(body, UpstreamBody):
            await body.stream.cancel()

    def chunks(self, body):
        if isinstance(body, bytes):
            return _once(body)
        return deliver.chunks(_JsReader(body.stream.getReader()))


async def _once(body):
    yield body


_HEAD_FIELDS = ("content-type", "content-length", "content-encoding")


def _reads_whole(content_type, content_length, content_encoding):
    """deliver.reads_whole, as native_streams.send calls it (synchronously, in JavaScript)
    with the three fields of an answer's head it reads (each a string, or null)."""
    fields = zip(_HEAD_FIELDS, (content_type, content_length, content_encoding))
    return deliver.reads_whole(Headers((name, value) for name, value in fields if not _missing(value)))


class JsStreams:
    """deliver.Streams, over the runtime's streams. Its pipes are IdentityTransformStreams:
    workerd pumps those without running JavaScript per chunk, unlike a TransformStream."""

    def pipe(self, stream):
        pipe = IdentityTransformStream.new()
        return pipe.readable, stream.pipeTo(pipe.writable)

    def reader(self, stream, batch):
        return _JsBatchReader(stream.getReader(_BYOB), batch)

    def read_whole(self, stream):
        return _bytes(JsResponse.new(stream).arrayBuffer())  # the read starts now

    def observe(self, stream, abort, ended):
        client, seen = _Isolate.native_streams.observe(stream, abort)
        return client, seen.then(create_once_callable(lambda js_seen: ended(_observed(js_seen))))

    def channel(self):
        pipe = IdentityTransformStream.new()
        return pipe.readable, _JsWriter(pipe.writable)


async def _bytes(buffer):
    return (await buffer).to_bytes()


def _observed(seen):
    first_at = None if _missing(seen.firstAt) else seen.firstAt / 1000
    failure = None if _missing(seen.failure) else seen.failure
    return deliver.Observed(seen.copy.to_bytes(), first_at, failure, bool(seen.clientGone))


class _JsReader:
    """deliver.Reader, over a JS stream's reader."""

    __slots__ = ("_reader",)

    def __init__(self, reader):
        self._reader = reader

    async def read(self):
        step = await self._reader.read()
        return None if step.done else step.value.to_bytes()

    def release(self):
        self._reader.releaseLock()

    async def cancel(self):
        await self._reader.cancel()


class _JsBatchReader(_JsReader):
    """deliver.Reader over a JS byte stream's BYOB reader, `batch` bytes a read into one
    buffer (each read hands it back). workerd's readAtLeast resolves with fewer bytes only
    at the stream's end, so the read after such a one is not made."""

    __slots__ = ("_batch", "_buffer", "_ended")

    def __init__(self, reader, batch):
        super().__init__(reader)
        self._batch, self._buffer, self._ended = batch, Uint8Array.new(batch).buffer, False

    async def read(self):
        if self._ended:
            return None
        step = await self._reader.readAtLeast(self._batch, Uint8Array.new(self._buffer))
        if step.done:
            return None
        chunk = step.value.to_bytes()
        self._buffer, self._ended = step.value.buffer, len(chunk) < self._batch
        return chunk


class _JsWriter:
    """deliver.Writer, over a JS stream's writable side."""

    __slots__ = ("_writable", "_writer")

    def __init__(self, writable):
        self._writable, self._writer = writable, writable.getWriter()

    async def write(self, chunk):
        await self._writer.write(to_js(chunk))

    async def close(self):
        await self._writer.close()

    async def pipe(self, stream):
        self._writer.releaseLock()
        await stream.pipeTo(self._writable)


_STREAMS = JsStreams()


def _js_object(mapping):
    return to_js(mapping, dict_converter=Object.fromEntries)


_BYOB = _js_object({"mode": "byob"})


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
        # One conversion of all the rows, through JSON: SQL NULL becomes None (to_py() leaves
        # a JsNull in each such field), and no crossing per row or field.
        return json.loads(JSON.stringify((await unlocked(self._statement(sql, params).all)).results))

    async def run(self, sql, params=()):
        await unlocked(self._statement(sql, params).run)

    async def batch(self, statements):
        batch = to_js([self._statement(sql, params) for sql, params in statements])
        results = await unlocked(lambda: self._binding.batch(batch))
        return [json.loads(JSON.stringify(result.results)) for result in results]


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


class R2Bucket:
    """The core's ObjectStore, over an R2 bucket binding."""

    def __init__(self, binding):
        self._binding = binding

    async def put(self, key, body):
        await self._binding.put(key, body, _NDJSON)


_NDJSON = _js_object({"httpMetadata": {"contentType": "application/x-ndjson"}})


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
    reading them again on every request (a JS crossing per name) would be wasted work.

    env is the runtime's own (the `cloudflare:workers` module's), not the SDK's wrapper in
    `WorkerEntrypoint.env`, which converts every binding call's arguments and results to and
    from Python: the adapter makes its own, fewer conversions (D1 rows once per query)."""

    env = None
    services = None  # Services' fields but `defer`, which is the request's (_services)
    native_streams = None  # src/native_streams.mjs: the upstream call and stream observation
    reads_whole = None  # _reads_whole, callable from JavaScript (made once, not per call)

    @classmethod
    def load(cls):
        if cls.services is None:
            env = cls.env = import_from_javascript("cloudflare:workers").env
            cls.native_streams = import_from_javascript("native_streams.mjs")
            cls.reads_whole = create_proxy(_reads_whole)
            bindings = set(Object.keys(env).to_py())
            limiters = {
                int(name[len(RPM_PREFIX) :]): RateLimitBinding(getattr(env, name))
                for name in bindings
                if name.startswith(RPM_PREFIX) and name[len(RPM_PREFIX) :].isdigit()
            }
            cls.services = dict(
                transport=FetchTransport(),
                db=D1Database(env.DB) if "DB" in bindings else None,
                kv=WorkersKV(env.RELAY_KV) if "RELAY_KV" in bindings else None,
                exports=R2Bucket(env.USAGE_EXPORT) if "USAGE_EXPORT" in bindings else None,
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


def _services(ctx):
    # Made from the isolate's fields, not by dataclasses.replace: that walks every field
    # with a test of each, per request.
    return Services(**_Isolate.load(), defer=lambda work: ctx.waitUntil(to_js(work)))


def _to_request(js_request):
    url = URL.new(js_request.url)
    headers = Headers(_pairs(js_request.headers))

    def read_body(limit):
        body = None if _missing(js_request.body) else js_request.body
        return request_body(body, declared_length(headers), limit, _STREAMS)

    return Request(
        method=js_request.method,
        path=url.pathname,
        query=url.search[1:],
        headers=headers,
        read_body=read_body,
    )


async def _discard_unread_body(js_request):
    """Answering before the client has sent its whole body (401, 404, 413 by
    content-length) makes HTTP/1.1 peers see a reset instead of relay's answer."""
    if _missing(js_request.body) or js_request.bodyUsed:
        return
    reader = js_request.body.getReader()
    while not (await reader.read()).done:
        pass


async def serve(js_request, ctx):
    """Answer one request. Nothing raised here reaches the runtime, which would answer a 500
    with a Python traceback in its body: relay answers its own 500 in the client's format."""
    try:
        services = _services(ctx)
        request = _to_request(js_request)
        response = await handle(request, _Vars(_Isolate.env), services)
        await _discard_unread_body(js_request)
        return _to_js_response(await deliver.deliver(response, request.path, _STREAMS, services.defer))
    except Exception:
        log("internal error in the Workers adapter\n" + traceback.format_exc())
        return _to_js_response(
            error_response(surface_of(URL.new(js_request.url).pathname), 500, "relay failed to handle this request")
        )


def _to_js_response(answer):
    body = to_js(answer.body) if isinstance(answer.body, bytes) else answer.body
    return JsResponse.new(body, status=answer.status, headers=_js_headers(answer.headers))


class Default(WorkerEntrypoint):
    """The Worker's entry point: the runtime calls `fetch` with its Request (the SDK's
    wrapper; relay reads the runtime's own), and `scheduled` on its Cron Trigger."""

    async def fetch(self, request, *_):
        return await serve(request.js_object, self.ctx)

    async def scheduled(self, controller, env, ctx):
        services = _services(self.ctx)
        await scheduled.run(_Vars(_Isolate.env), services, Date.now() / 1000)


# The SDK calls `fetch` through pyodide.code.relaxed_call, which drops arguments a function
# does not take. To know which, it works out the signature of the bound method of the new
# instance on every request (its cache never sees the same method twice): inspect.signature,
# Signature.replace and bind, about 350 Python lines, a sixth of relay's whole request
# (BENCHMARKS.md). A function whose signature inspect cannot give is called as it is, so
# fetch takes any arguments after the request, and has no signature inspect can give.
Default.fetch.__signature__ = object()
