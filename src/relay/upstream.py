"""Calling the provider: its URL, its credential, its answer handed back unbuffered."""

from __future__ import annotations

from typing import Optional

from .errors import error_response
from .headers import client_response_headers, upstream_request_headers
from .http import Headers, Request, Response, Transport, UpstreamUnreachable
from .routes import Route


def credential(surface: str, key: str) -> list[tuple[str, str]]:
    """The upstream key in the form that provider expects."""
    if surface == "openai":
        return [("authorization", f"Bearer {key}")]
    return [("x-api-key", key)]


def upstream_url(base: str, route: Route, query: str) -> str:
    return base + route.upstream_path + (f"?{query}" if query else "")


async def forward(request: Request, route: Route, body: Optional[bytes], base: str, key: str,
                  transport: Transport) -> Response:
    """Send the request on and return the upstream's status, fields and body stream as they are."""
    headers = upstream_request_headers(request.headers, credential(route.surface, key))
    url = upstream_url(base, route, request.query)
    try:
        answer = await transport.send(request.method, url, headers, body)
    except UpstreamUnreachable:
        return error_response(route.surface, 502, "the upstream API could not be reached")
    return Response(answer.status, client_response_headers(Headers(answer.headers)), answer.body)
