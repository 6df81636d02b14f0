"""The request pipeline: CORS, route, auth, body checks, then the upstream."""

from __future__ import annotations

import json
import traceback
from typing import Mapping, Optional

from . import auth, cors
from .config import ConfigError, Settings
from .errors import error_response
from .http import Request, Response, Transport
from .routes import Route, is_safe_path, resolve, surface_of
from .upstream import forward


async def handle(request: Request, env: Mapping[str, Optional[str]], transport: Transport) -> Response:
    """Answer one client request; never raises, never shows a stack trace."""
    surface = surface_of(request.path)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}")
        return error_response(surface, 500, f"relay is misconfigured: {exc}")
    origin = request.headers.get("origin")
    if cors.is_preflight(request.method, request.headers):
        return cors.preflight(request.headers, settings.cors_origins, surface)
    try:
        response = await _dispatch(request, settings, transport, surface)
    except Exception:
        print("relay: internal error\n" + traceback.format_exc())
        response = error_response(surface, 500, "relay failed to handle this request")
    return cors.decorate(response, origin, settings.cors_origins)


async def _dispatch(request: Request, settings: Settings, transport: Transport, surface: str) -> Response:
    route = resolve(request.method, request.path)
    if route is None:
        return error_response(surface, 404, f"no route for {request.method} {request.path}")
    if not is_safe_path(request.path):
        return error_response(surface, 400, "the request path contains dot segments or encoded separators")
    if not auth.is_accepted(auth.presented_key(request.headers), settings.client_keys):
        return error_response(surface, 401, "invalid or missing relay key (x-api-key or Authorization: Bearer)")

    body, problem = await _read_body(request, route, settings.max_body_bytes)
    if problem is not None:
        return problem

    keys = settings.upstream_keys[route.surface]
    if not keys:
        return error_response(surface, 500, f"relay has no upstream key configured for {route.surface}")
    return await forward(request, route, body, settings.upstream_urls[route.surface], keys[0], transport)


async def _read_body(request: Request, route: Route, limit: int) -> tuple[Optional[bytes], Optional[Response]]:
    """The body, or the error that stops it: too large (413) or not the JSON object the route needs (400)."""
    too_large = error_response(route.surface, 413, f"request body exceeds relay's limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None, too_large
    if request.method in ("GET", "HEAD"):
        return None, None
    body = await request.read_body()
    if len(body) > limit:
        return None, too_large
    if route.json_body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return None, error_response(route.surface, 400, "request body is not valid JSON (UTF-8)")
        if not isinstance(parsed, dict):
            return None, error_response(route.surface, 400, "request body must be a JSON object")
    return body, None
