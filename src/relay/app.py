"""The request pipeline: CORS, route, auth, body checks, then the upstream."""

from __future__ import annotations

import time
import traceback
from typing import Any, Mapping, Optional

from . import admin, auth, cache, cors, layout, limits
from .config import ConfigError, Settings
from .errors import error_response
from .http import Request, Response
from .routes import Route, is_safe_path, resolve, surface_of
from .services import Services
from .session import session_id
from .upstream import forward

# The only route whose body relay may change: Anthropic Messages (prompt-cache markers).
# count_tokens is left alone: markers change neither its answer nor any bill.
MESSAGES_PATH = "/v1/messages"


async def handle(request: Request, env: Mapping[str, Optional[str]], services: Services) -> Response:
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
        response = await _dispatch(request, settings, services, surface)
    except Exception:
        print("relay: internal error\n" + traceback.format_exc())
        response = error_response(surface, 500, "relay failed to handle this request")
    return cors.decorate(response, origin, settings.cors_origins)


async def _dispatch(request: Request, settings: Settings, services: Services, surface: str) -> Response:
    if not is_safe_path(request.path):
        return error_response(surface, 400, "the request path contains dot segments or encoded separators")
    if request.path.startswith("/admin/"):
        return await admin.handle(request, settings, services)
    route = resolve(request.method, request.path)
    if route is None:
        return error_response(surface, 404, f"no route for {request.method} {request.path}")
    now = time.time()
    caller = await auth.authenticate(request.headers, settings, services, now)
    if isinstance(caller, auth.Refusal):
        return error_response(surface, caller.status, caller.message)
    if services.limiters:
        rpm = caller.rpm_limit or settings.default_rpm
        wait = await limits.retry_after(caller.key_id, rpm, services.limiters)
        if wait is not None:
            return error_response(surface, 429, f"relay key {caller.key_id} is over its limit of {rpm} "
                                  f"requests per minute", (("retry-after", str(wait)),))

    body, parsed, shape, problem = await _read_body(request, route, settings.max_body_bytes)
    if problem is not None:
        return problem
    model = parsed.get("model") if isinstance(parsed, dict) else None
    if not caller.may_use(model if isinstance(model, str) else None):
        return error_response(surface, 403, f"relay key {caller.key_id} may not use model {model}")
    if route.upstream_path == MESSAGES_PATH and shape is not None:
        # `injection.markers_added` is what the usage log records as markers relay added.
        injection = cache.add_markers(body, parsed, shape, caller.cache_policy or settings.cache_policy)
        body = injection.body
    return await forward(request, route, body, settings, services, session_id(request.headers, parsed), now)


async def _read_body(request: Request, route: Route, limit: int
                     ) -> tuple[Optional[bytes], Any, Optional[layout.Layout], Optional[Response]]:
    """The body, for JSON routes its parsed form and layout (where its parts lie in the
    text); or the error that stops it: too large (413) or not the JSON object the route
    needs (400)."""
    too_large = error_response(route.surface, 413, f"request body exceeds relay's limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None, None, None, too_large
    if request.method in ("GET", "HEAD"):
        return None, None, None, None
    body = await request.read_body()
    if len(body) > limit:
        return None, None, None, too_large
    if not route.json_body:
        return body, None, None, None
    try:
        parsed, shape = layout.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None, None, None, error_response(route.surface, 400, "request body is not valid JSON (UTF-8)")
    if not isinstance(parsed, dict):
        return None, None, None, error_response(route.surface, 400, "request body must be a JSON object")
    return body, parsed, shape, None
