"""Calling the providers: a route's targets in order, each with a key from its pool, the
answer handed back unbuffered.

A 429, 529 or 5xx arrives before any byte has reached the client, so relay can still
try the next healthy key, then the route's next target: the client sees one answer.
Only 429 cools a key down; the others say the provider is struggling, not that this key
is spent. Once a response is passed on, there is no retry: a mid-stream error frame
reaches the client as it is.
"""

from __future__ import annotations

import math

from relay.http.errors import error_response
from relay.http.headers import client_response_headers
from relay.http.messages import Headers, Request, Response, UpstreamTimeout, UpstreamUnreachable
from relay.pipeline.endpoints import Route
from relay.providers import target_call
from relay.providers.key_pool import RETRYABLE, Cooldowns, cooldown_until, exhausted_kind, preference, scope_of
from relay.providers.model_routes import Provider, Target
from relay.providers.translate import TranslationError
from relay.services import Services
from relay.usage.meter import Exchange


def credential(api_format: str, key: str) -> list[tuple[str, str]]:
    """The upstream key in the form that provider's API expects."""
    if api_format == "openai":
        return [("authorization", f"Bearer {key}")]
    return [("x-api-key", key)]


def _wait(cooling: dict[str, float], now: float) -> int:
    return max(1, math.ceil(min(cooling.values()) - now))


def _passed_on(answer: Response, cooling: dict[str, float], now: float) -> Response:
    headers = client_response_headers(Headers(answer.headers))
    if answer.status == 429 and cooling:
        # The client may come back as soon as any key of the pool has recovered.
        headers = [(n, v) for n, v in headers if n != "retry-after"] + [("retry-after", str(_wait(cooling, now)))]
    return Response(answer.status, headers, answer.body)


async def forward(
    request: Request,
    route: Route,
    body: bytes | None,
    targets: list[Target],
    services: Services,
    exchange: Exchange,
    now: float,
    timeout: float,
) -> Response:
    """Send the request to the first target that answers, each through its key pool.

    A target whose pool is all cooling, unreachable, or answers a retryable status with
    every key gives way to the next one; the last target's answer is the client's.
    `timeout`: seconds each call may take to answer with its status and headers."""
    exchange.provider = targets[0].provider.name
    calls, problems = [], []
    for target in targets:
        try:
            calls.append(target_call.prepare(request, route, body, target))
        except (target_call.NotServed, TranslationError) as exc:
            problems.append(str(exc))
    if not calls:
        model = exchange.model_requested
        return error_response(route.surface, 400, f"model {model} cannot be served as requested: {problems[0]}")
    for call in calls[:-1]:
        exchange.provider = call.target.provider.name
        answer = await _through_pool(request, route, call, services, exchange, now, timeout, last=False)
        if answer is not None:
            return await target_call.reply(call, answer, services.transport, now)
        print(f"relay: provider {call.target.provider.name} did not serve; trying the route's next target")
    call = calls[-1]
    exchange.provider = call.target.provider.name
    answer = await _through_pool(request, route, call, services, exchange, now, timeout, last=True)
    return await target_call.reply(call, answer, services.transport, now)


async def _through_pool(
    request: Request,
    route: Route,
    call: target_call.Call,
    services: Services,
    exchange: Exchange,
    now: float,
    timeout: float,
    last: bool,
) -> Response | None:
    """The answer of the first healthy key that does not answer a retryable status; the
    last key's answer (or relay's error) if `last`, else None to move on."""
    provider: Provider = call.target.provider
    surface = call.surface
    session = exchange.session_id
    if not provider.keys:
        return (
            error_response(surface, 500, f"relay has no upstream key configured for {provider.name}") if last else None
        )
    scope = scope_of(route.upstream_path, call.model or call.target.model or exchange.model_requested)
    cooldowns = Cooldowns(provider.name, [key.id for key in provider.keys], services, scope)
    cooling = await cooldowns.current(now)
    if not session:
        services.state.turn += 1
    candidates = [key for key in preference(provider.keys, session, services.state.turn) if key.id not in cooling]
    if not candidates:
        if not last:
            return None
        wait = _wait(cooling, now)
        return error_response(
            surface,
            429,
            f"every upstream key of {provider.name} is rate limited for {scope} models; retry after {wait}s",
            (("retry-after", str(wait)),),
        )
    transport = services.transport
    final = candidates[-1]
    for key in candidates:
        headers = call.headers + credential(provider.format, key.secret)
        exchange.upstream_key_id = key.id
        try:
            answer = await transport.send(request.method, call.url, headers, call.body, timeout)
        except UpstreamTimeout:
            return (
                error_response(
                    surface,
                    504,
                    f"the upstream API did not answer within {timeout:g}s (RELAY_UPSTREAM_TIMEOUT_SECONDS)",
                )
                if last
                else None
            )
        except UpstreamUnreachable:
            return error_response(surface, 502, "the upstream API could not be reached") if last else None
        if answer.status == 429:
            fields = Headers(answer.headers)
            await cooldowns.cool(key.id, cooldown_until(429, fields, now), now, exhausted_kind(fields))
        if answer.status not in RETRYABLE or (key is final and last):
            cooling = await cooldowns.current(now) if answer.status == 429 else {}
            return _passed_on(answer, cooling, now)
        print(f"relay: upstream key {key.id} answered {answer.status}; trying the next key")
        await transport.discard(answer.body)
    return None
