"""The request pipeline: CORS, route, auth, body checks, then the upstream."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Mapping
from typing import Any

from relay.admin import api
from relay.config import ConfigError, Settings, settings_for
from relay.http import cors, json_spans
from relay.http.bodies import declared_length
from relay.http.errors import Refused, error_response
from relay.http.messages import Headers, Request, Response
from relay.identity import policy, relay_keys
from relay.limits import cap_headers, cap_usage, key_limits, session_breaker, spend_gate, token_rates
from relay.pipeline.endpoints import STREAM_USAGE_OPTION, Route, is_safe_path, resolve, surface_of, variant_of
from relay.pipeline.session import session_id
from relay.prompt_cache import markers
from relay.providers import model_list
from relay.providers.failover import forward
from relay.services import Services
from relay.usage import meter

# The only route whose body relay may change: Anthropic Messages (prompt-cache markers).
# count_tokens is left alone: markers change neither its answer nor any bill.
MESSAGES_PATH = "/v1/messages"


async def handle(request: Request, env: Mapping[str, str | None], services: Services) -> Response:
    """Answer one client request; never raises, never shows a stack trace."""
    surface = surface_of(request.path)
    try:
        settings = settings_for(env, services.state)
    except ConfigError as exc:
        print(f"relay: configuration error: {exc}")
        return error_response(surface, 500, f"relay is misconfigured: {exc}")
    origin = request.headers.get("origin")
    if cors.is_preflight(request.method, request.headers):
        return cors.preflight(request.headers, settings.cors_origins, surface)
    if not is_safe_path(request.path):
        response = error_response(surface, 400, "the request path contains dot segments or encoded separators")
    elif (canonical := variant_of(request.path)) is not None:
        response = error_response(
            surface_of(canonical), 400, f"relay serves {canonical} only at that exact path, not at {request.path}"
        )
    elif request.path.startswith("/admin/"):
        response = await _guarded(api.handle(request, settings, services), surface)
    elif request.method == "GET" and request.path == cap_usage.PATH:
        response = await _guarded(cap_usage.handle(request, settings, services, time.time()), surface)
    else:
        route = resolve(request.method, request.path)
        if route is None:
            response = error_response(surface, 404, f"no route for {request.method} {request.path}")
        else:
            exchange = meter.Exchange(
                started=services.clock(),
                surface=surface,
                method=request.method,
                path=request.path,
                client=meter.client_family(request.headers.get("user-agent")),
                session_id=session_id(request.headers, None),
            )
            response = await _guarded(_api(request, route, settings, services, exchange), surface)
            response.tap = meter.Meter(
                exchange,
                response.status,
                Headers(response.headers).get("content-type") or "",
                services,
                settings.prices,
            )
    return cors.decorate(response, origin, settings.cors_origins)


async def _guarded(answer, surface: str) -> Response:
    try:
        return await answer
    except Refused as refused:
        return refused.response(surface)
    except Exception:
        print("relay: internal error\n" + traceback.format_exc())
        return error_response(surface, 500, "relay failed to handle this request")


async def _api(
    request: Request, route: Route, settings: Settings, services: Services, exchange: meter.Exchange
) -> Response:
    """One API request: who calls, within which limits, with what body; then the upstream.
    Each step records what it learns on `exchange`, for the audit row."""
    surface = route.surface
    now = time.time()
    caller = await relay_keys.authenticate(request.headers, settings, services, now, surface)
    if isinstance(caller, relay_keys.Refusal):
        return error_response(surface, caller.status, caller.message)
    exchange.key_id, exchange.billing_tag = caller.key_id, caller.billing_tag
    caps = await spend_gate.caps_for(services, caller.key_id, caller.billing_tag, now, settings.key_cache_seconds)
    if caps:
        caller = dataclasses.replace(caller, spend_capped=True)
    if services.limiters:
        rpm = caller.rpm_limit or settings.default_rpm
        wait = await key_limits.retry_after(caller.key_id, rpm, services.limiters)
        if wait is not None:
            return error_response(
                surface,
                429,
                f"relay key {caller.key_id} is over its limit of {rpm} requests per minute",
                (("retry-after", str(wait)),),
            )
    if caller.monthly_budget_usd is not None and services.db is not None:
        spent = await key_limits.spent_this_month(
            services.db, services.state, caller.key_id, now, settings.key_cache_seconds
        )
        if spent >= caller.monthly_budget_usd:
            return error_response(
                surface,
                402,
                f"relay key {caller.key_id} has spent its monthly budget of "
                f"${caller.monthly_budget_usd:.2f} (${spent:.2f} this month)",
            )

    refusal = policy.endpoint_refusal(caller, route, request.method, request.path)
    if refusal is not None:
        return error_response(surface, 403, refusal)
    if settings.routes.configured and model_list.answers(surface, request.method, route.upstream_path):
        return model_list.response(surface, settings.routes)
    body, parsed, shape, problem = await _read_body(request, route, settings.max_body_bytes)
    if problem is not None:
        return problem
    model = parsed.get("model") if isinstance(parsed, dict) else None
    model = model if isinstance(model, str) else None
    exchange.model_requested = model
    exchange.stream = isinstance(parsed, dict) and parsed.get("stream") is True
    exchange.session_id = session_id(request.headers, parsed)
    if exchange.session_id and services.db is not None and spend_gate.costs_something(route):
        if settings.session_max_requests:
            await spend_gate.count_session(services, settings, exchange.session_id, now)
        if settings.session_max_usd:
            caps = [*caps, session_breaker.spend_cap(exchange.session_id, settings.session_max_usd)]
            caller = dataclasses.replace(caller, spend_capped=True)
    problem = policy.body_refusal(caller, route, parsed, shape)
    if problem is not None:
        return error_response(surface, *problem)
    targets = settings.routes.targets(surface, model, exchange.session_id)
    unpriced = policy.price_refusal(caller, route, model, targets, settings.prices)
    if unpriced is not None:
        return error_response(surface, 403, unpriced)
    if exchange.stream and caller.max_concurrent_streams and services.db is not None:
        exchange.stream_slot = await key_limits.open_stream(
            services.db, caller.key_id, caller.max_concurrent_streams, now
        )
        if exchange.stream_slot is None:
            return error_response(
                surface,
                429,
                f"relay key {caller.key_id} already has {caller.max_concurrent_streams} streams open, its limit",
                (("retry-after", "1"),),
            )
    if route.upstream_path == MESSAGES_PATH and shape is not None:
        injection = markers.add_markers(body, parsed, shape, caller.cache_policy or settings.cache_policy)
        body, exchange.cache_markers_added = injection.body, injection.markers_added
    if exchange.stream and surface == "openai" and route.upstream_path in STREAM_USAGE_OPTION:
        body = meter.ask_for_usage(body, parsed)
    if spend_gate.costs_something(route):
        exchange.token_hold = await token_rates.admit(
            services, caller.key_id, parsed, body, now, settings.key_cache_seconds
        )
    if caps and spend_gate.costs_something(route):
        exchange.spend_hold = await spend_gate.admit(
            services, caps, parsed, body, model, settings.prices, now, settings.alerting
        )
    response = await forward(request, route, body, targets, services, exchange, now, settings.upstream_timeout)
    if exchange.spend_hold is not None and surface == "anthropic" and response.status < 400:
        response = cap_headers.with_standing(response, exchange.spend_hold)
    return response


async def _read_body(
    request: Request, route: Route, limit: int
) -> tuple[bytes | None, Any, json_spans.Layout | None, Response | None]:
    """The body, for JSON routes its parsed form and layout (where its parts lie in the
    text); or the error that stops it: too large (413) or not the JSON object the route
    needs (400)."""

    def too_large() -> Response:
        return error_response(route.surface, 413, f"request body exceeds relay's limit of {limit} bytes")

    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        return None, None, None, too_large()
    if request.method in ("GET", "HEAD"):
        return None, None, None, None
    body = await request.read_body(limit)
    if body is None:
        return None, None, None, too_large()
    if not route.json_body:
        return body, None, None, None
    try:
        parsed, shape = json_spans.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None, None, None, error_response(route.surface, 400, "request body is not valid JSON (UTF-8)")
    if not isinstance(parsed, dict):
        return None, None, None, error_response(route.surface, 400, "request body must be a JSON object")
    return body, parsed, shape, None
