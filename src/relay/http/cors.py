"""CORS for browser clients: preflights answered by relay, origins from RELAY_CORS_ORIGINS."""

from __future__ import annotations

from typing import TypeGuard

from relay.http.errors import error_response
from relay.http.messages import Headers, Response

_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_MAX_AGE = "86400"
# Response fields a browser shows scripts without being told (Fetch standard).
_SAFELISTED = frozenset(
    {
        "cache-control",
        "content-language",
        "content-length",
        "content-type",
        "expires",
        "last-modified",
        "pragma",
    }
)


def is_preflight(method: str, headers: Headers) -> bool:
    return method == "OPTIONS" and "origin" in headers and "access-control-request-method" in headers


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> TypeGuard[str]:
    """Whether an origin was sent and may read relay's answers."""
    return bool(origin) and ("*" in allowed or origin in allowed)


def preflight(headers: Headers, allowed: tuple[str, ...], surface: str) -> Response:
    """Answer a preflight. Requested headers are echoed, so every SDK header
    (anthropic-*, x-stainless-*, openai-*) is allowed; the key is still checked on the real request."""
    origin = headers.get("origin")
    if not origin_allowed(origin, allowed):
        return error_response(surface, 403, f"origin {origin} is not allowed by this relay")
    fields = [
        ("access-control-allow-origin", origin),
        ("access-control-allow-methods", _METHODS),
        ("access-control-max-age", _MAX_AGE),
        ("vary", "Origin, Access-Control-Request-Headers"),
    ]
    requested = headers.get("access-control-request-headers")
    if requested:
        fields.append(("access-control-allow-headers", requested))
    return Response(204, fields, b"")


def decorate(response: Response, origin: str | None, allowed: tuple[str, ...]) -> Response:
    """Let an allowed origin read the response, every non-safelisted field exposed
    (request-id, retry-after, anthropic-ratelimit-*, ...)."""
    if not origin_allowed(origin, allowed):
        return response
    exposed = sorted({name for name, _ in response.headers if name not in _SAFELISTED})
    response.headers = response.headers + [("access-control-allow-origin", origin), ("vary", "Origin")]
    if exposed:
        response.headers.append(("access-control-expose-headers", ", ".join(exposed)))
    return response
