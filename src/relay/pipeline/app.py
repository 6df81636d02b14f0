"""The request pipeline: CORS, route, auth, body checks, then the upstream."""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from relay.admin import api
from relay.config import ConfigError, Settings, settings_for
from relay.http import cors, json_spans
from relay.http.bodies import declared_length, read_bounded, too_large
from relay.http.errors import Refused, error_response
from relay.http.messages import Headers, Request, Response
from relay.identity import gateway_routes, policy, relay_keys
from relay.limits import cap_headers, cap_usage, key_limits, session_breaker, spend_gate, token_rates
from relay.log import log
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
    except ConfigError as exc:  # a Refused (500), answered before CORS: its settings are what failed
        log(f"configuration error: {exc.problem}")
        return exc.response(surface)
    origin = request.headers.get("origin")
    if cors.is_preflight(request.method, request.headers):
        return await _guarded(_preflight(request, settings), surface)
    response = await _guarded(_dispatch(request, settings, services, surface), surface)
    return cors.decorate(response, origin, settings.cors_origins)


async def _preflight(request: Request, settings: Settings) -> Response:
    return cors.preflight(request.headers, settings.cors_origins)


async def _dispatch(request: Request, settings: Settings, services: Services, surface: str) -> Response:
    """The admin API's answer or an API route's, with its usage meter; Refused for a path
    relay does not serve."""
    if not is_safe_path(request.path):
        raise Refused(400, "the request path contains dot segments or encoded separators")
    if (canonical := variant_of(request.path)) is not None:
        raise Refused(
            400,
            f"relay serves {canonical} only at that exact path, not at {request.path}",
            surface=surface_of(canonical),
        )
    if request.path.startswith("/admin/"):
        return await api.handle(request, settings, services)
    if gateway_routes.serves(settings, request.path):
        return await gateway_routes.handle(request, settings, services, services.clock())
    if request.method == "GET" and request.path == cap_usage.PATH:
        return await cap_usage.handle(request, settings, services, services.clock())
    route = resolve(request.method, request.path)
    if route is None:
        raise Refused(404, f"no route for {request.method} {request.path}")
    exchange = meter.Exchange(
        started=services.clock(),
        surface=surface,
        method=request.method,
        path=request.path,
        client=meter.client_family(request.headers.get("user-agent")),
        session_id=session_id(request.headers, None),
    )
    # Guarded here too, so that a refused API request still leaves its audit row.
    response = await _guarded(_api(request, route, settings, services, exchange), surface)
    response.tap = meter.Meter(
        exchange, response.status, Headers(response.headers).get("content-type"), services, settings.prices
    )
    return response


async def _guarded(answer: Awaitable[Response], surface: str) -> Response:
    """`answer`, or relay's refusal of the request (Refused, raised wherever its reason is
    found), or a 500 that shows no trace, each in the client's format."""
    try:
        return await answer
    except Refused as refused:
        return refused.response(surface)
    except Exception:
        log("internal error\n" + traceback.format_exc())
        return error_response(surface, 500, "relay failed to handle this request")


async def _api(
    request: Request, route: Route, settings: Settings, services: Services, exchange: meter.Exchange
) -> Response:
    """One API request: who calls, within which limits, with what body; then the upstream.
    Each step records what it learns on `exchange`, for the audit row, and raises Refused
    when the request may not go on."""
    surface = route.surface
    now = services.clock()
    caller = await relay_keys.authenticate(request.headers, settings, services, now, surface)
    exchange.key_id, exchange.billing_tag = caller.key_id, caller.billing_tag
    exchange.person_id, exchange.person_email, exchange.group_name = caller.person_id, caller.person_email, caller.group
    caps = await spend_gate.caps_for(services, caller, now, settings.key_cache_seconds)
    if caps:
        caller = dataclasses.replace(caller, spend_capped=True)
    if services.limiters:
        await key_limits.check_rate(
            caller.key_id, caller.rpm_limit or settings.default_rpm, services.limiters, now, services.state
        )
    policy.check_endpoint(caller, route, request.method, request.path)
    lists_models = model_list.answers(surface, request.method, route.upstream_path)
    if settings.routes.configured and lists_models:
        return model_list.response(surface, settings.routes, caller.may_use)
    cache_policy = caller.cache_policy or settings.cache_policy
    body, parsed, shape = await _read_body(
        request,
        route,
        settings.max_body_bytes,
        # The layout serves the markers and the policy's checks of a limited key's body (a
        # session's spend cap, below, limits it too).
        lambda size: (
            policy.limited(caller)
            or bool(settings.session_max_usd)
            or (route.upstream_path == MESSAGES_PATH and markers.may_mark(size, cache_policy))
        ),
    )
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
    # The budget is checked once the body is read, so a refused request's row still says
    # which model it asked for.
    if caller.monthly_budget_usd is not None and services.db is not None:
        await key_limits.check_budget(
            services.db, services.state, caller.key_id, caller.monthly_budget_usd, now, settings.key_cache_seconds
        )
    policy.check_body(caller, route, parsed, shape)
    targets = settings.routes.targets(surface, model, exchange.session_id)
    policy.check_price(caller, route, model, targets, settings.prices)
    if exchange.stream and caller.max_concurrent_streams and services.db is not None:
        exchange.stream_slot = await key_limits.take_stream_slot(
            services.db, caller.key_id, caller.max_concurrent_streams, now
        )
    if route.upstream_path == MESSAGES_PATH and body is not None and shape is not None:
        injection = markers.add_markers(body, parsed, shape, cache_policy)
        body, exchange.cache_markers_added = injection.body, injection.markers_added
    if exchange.stream and body is not None and surface == "openai" and route.upstream_path in STREAM_USAGE_OPTION:
        body = meter.ask_for_usage(body, parsed)
    if spend_gate.costs_something(route):
        exchange.token_hold = await token_rates.admit(
            services, caller.key_id, parsed, body, now, settings.key_cache_seconds
        )
    if caps and spend_gate.costs_something(route):
        exchange.spend_hold = await spend_gate.admit(
            services, caps, parsed, body, model, settings.prices, now, settings.alerting
        )
    answer = await forward(request, route, body, targets, services, exchange, now, settings.upstream_timeout)
    if exchange.spend_hold is not None and surface == "anthropic" and answer.status < 400:
        answer = cap_headers.with_standing(answer, exchange.spend_hold)
    if lists_models and caller.person_id and caller.allowed_models:
        return await model_list.filtered(surface, answer, caller.may_use, services.transport)
    return answer


async def _read_body(
    request: Request, route: Route, limit: int, wants_layout: Callable[[int], bool]
) -> tuple[bytes | None, Any, json_spans.Layout | None]:
    """The body, for JSON routes its parsed form and, when `wants_layout(its size)`, its
    layout (where its parts lie in the text). Refused when it is too large (413) or not the
    JSON object the route needs (400)."""
    if request.method in ("GET", "HEAD"):
        declared = declared_length(request.headers)
        if declared is not None and declared > limit:
            raise too_large(limit, "relay's")
        return None, None, None
    body = await read_bounded(request, limit, "relay's")
    if not route.json_body:
        return body, None, None
    try:
        parsed, shape = json_spans.loads(body, wants_layout(len(body)))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise Refused(400, "request body is not valid JSON (UTF-8)") from None
    if not isinstance(parsed, dict):
        raise Refused(400, "request body must be a JSON object")
    return body, parsed, shape
