"""Workers adapter: runtime objects in, plain Python to relay's core, a streaming Response out.

This is the only module that imports the runtime (js, pyodide, workers). The upstream
body stream is handed back to the runtime untouched, so SSE reaches the client chunk by
chunk with no Python code on the byte path.
"""

from js import URL, Object, fetch
from js import Headers as JsHeaders
from js import Response as JsResponse
from pyodide.ffi import to_js

from relay.app import handle
from relay.config import NAMES
from relay.http import Headers, Request, Response, UpstreamUnreachable


def _js_headers(pairs):
    return JsHeaders.new(to_js([[name, value] for name, value in pairs]))


def _pairs(js_headers):
    return [(pair[0], pair[1]) for pair in js_headers]


class FetchTransport:
    """The core's Transport, over the runtime's fetch()."""

    async def send(self, method, url, headers, body):
        init = {"method": method, "headers": _js_headers(headers)}
        if body is not None:
            init["body"] = to_js(body)
        try:
            answer = await fetch(url, to_js(init, dict_converter=Object.fromEntries))
        except Exception as exc:  # a JsException: DNS, connect, TLS or reset
            raise UpstreamUnreachable(type(exc).__name__) from None
        return Response(answer.status, _pairs(answer.headers), answer.body)


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


def _to_js_response(response):
    body = response.body
    if isinstance(body, (bytes, bytearray)):
        body = to_js(body) if body else None
    return JsResponse.new(body, status=response.status, headers=_js_headers(response.headers))


async def _discard_unread_body(js_request):
    """Answering before the client has sent its whole body (401, 404, 413 by
    content-length) makes HTTP/1.1 peers see a reset instead of relay's answer."""
    if js_request.body is None or js_request.bodyUsed:
        return
    reader = js_request.body.getReader()
    while not (await reader.read()).done:
        pass


async def serve(js_request, env, ctx):
    settings = {name: getattr(env, name, None) for name in NAMES}
    response = await handle(_to_request(js_request), settings, FetchTransport())
    await _discard_unread_body(js_request)
    return _to_js_response(response)


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
