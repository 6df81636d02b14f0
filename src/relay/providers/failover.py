"""Calling the providers: a route's targets in order, each with a key from its pool, the
answer handed back unbuffered.

A 429, 529 or 5xx arrives before any byte has reached the client, so relay can still
try the next healthy key, then the route's next target: the client sees one answer.
Only 429 cools a key down; the others say the provider is struggling, not that this key
is spent. Once a response is passed on, there is no retry: a mid-stream error frame
reaches the client as it is.

Each target's step ends in an answer to pass on, or a reason to move on (`MoveOn`): relay's
own refusal, or the provider's retryable answer, either of which the client gets if no
target is left to try.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from relay.http.errors import Refused
from relay.http.headers import client_response_headers
from relay.http.messages import Headers, Request, Response, UpstreamTimeout, UpstreamUnreachable
from relay.log import log
from relay.pipeline.endpoints import Route
from relay.providers import target_call
from relay.providers.key_pool import RETRYABLE, Cooldowns, cooldown_until, exhausted_kind, preference, scope_of
from relay.providers.model_routes import Provider, Target
from relay.providers.translate import TranslationError
from relay.services import Services
from relay.usage.meter import Exchange

NOT_SUPPORTED = (("x-should-retry", "false"),)


@dataclass
class MoveOn:
    """Why a target did not serve; what the client gets if it was the last one: relay's
    refusal, or the provider's own answer (a 429 or 5xx, not yet read)."""

    why: str
    refusal: Refused | None = None
    answer: Response | None = None


def _wait(cooling: dict[str, float], now: float) -> int:
    return max(1, math.ceil(min(cooling.values()) - now))


def _passed_on(answer: Response, cooling: dict[str, float], now: float) -> Response:
    headers = client_response_headers(Headers(answer.headers))
    if answer.status == 429 and cooling:
        # The client may come back as soon as any key of the pool has recovered.
        headers = [(n, v) for n, v in headers if n != "retry-after"] + [("retry-after", str(_wait(cooling, now)))]
    return Response(answer.status, headers, answer.body)


def _calls(
    request: Request, route: Route, body: bytes | None, targets: list[Target], model: str | None
) -> list[target_call.Call]:
    """The call to each target that can take the request; raises Refused if none can."""
    calls: list[target_call.Call] = []
    problems: list[Exception] = []
    for target in targets:
        try:
            calls.append(target_call.prepare(request, route, body, target))
        except (target_call.NotServed, TranslationError) as exc:
            problems.append(exc)
    if calls:
        return calls
    if any(isinstance(problem, target_call.CannotCount) for problem in problems):
        raise Refused(501, f"model {model} is served where relay cannot count tokens", NOT_SUPPORTED)
    raise Refused(400, f"model {model} cannot be served as requested: {problems[0]}")


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
    every key gives way to the next one; the last one's reason is the client's answer.
    `timeout`: seconds each call may take to answer with its status and headers."""
    exchange.provider = targets[0].provider.name
    moved: MoveOn | None = None
    for call in _calls(request, route, body, targets, exchange.model_requested):
        if moved is not None:
            log(f"provider {exchange.provider} did not serve ({moved.why}); trying the route's next target")
            if moved.answer is not None:
                await services.transport.discard(moved.answer.body)
        exchange.provider = call.target.provider.name
        step = await _through_pool(request, route, call, services, exchange, now, timeout)
        if isinstance(step, Response):
            return await target_call.reply(call, step, services.transport, now)
        moved = step
    assert moved is not None
    if moved.answer is not None:
        return await target_call.reply(call, moved.answer, services.transport, now)
    assert moved.refusal is not None
    raise moved.refusal


async def _through_pool(
    request: Request,
    route: Route,
    call: target_call.Call,
    services: Services,
    exchange: Exchange,
    now: float,
    timeout: float,
) -> Response | MoveOn:
    """The answer of the first healthy key that does not answer a retryable status, or why
    this target did not serve."""
    provider: Provider = call.target.provider
    session = exchange.session_id
    if not provider.keys:
        return MoveOn("no key", Refused(500, f"relay has no upstream key configured for {provider.name}"))
    # A 429 cools a key for the model class and limit kind that ran out, not for every call.
    scope = scope_of(route.upstream_path, call.model or call.target.model or exchange.model_requested)
    cooldowns = Cooldowns(provider.name, [key.id for key in provider.keys], services, scope)
    cooling = await cooldowns.current(now)
    if not session:
        services.state.turn += 1
    candidates = [key for key in preference(provider.keys, session, services.state.turn) if key.id not in cooling]
    if not candidates:
        wait = _wait(cooling, now)
        message = f"every upstream key of {provider.name} is rate limited for {scope} models; retry after {wait}s"
        return MoveOn("every key cooling", Refused(429, message, (("retry-after", str(wait)),)))
    transport = services.transport
    moved = MoveOn("no key answered")
    for key in candidates:
        if moved.answer is not None:
            await transport.discard(moved.answer.body)
        exchange.upstream_key_id = key.id
        try:
            credential = await target_call.authorization(call, key, services, now, timeout)
            answer = await transport.send(request.method, call.url, call.headers + credential, call.body, timeout)
        except target_call.NoCredential as exc:
            return MoveOn("no credential", Refused(502, str(exc)))
        except UpstreamTimeout:
            message = f"the upstream API did not answer within {timeout:g}s (RELAY_UPSTREAM_TIMEOUT_SECONDS)"
            return MoveOn("timeout", Refused(504, message))
        except UpstreamUnreachable:
            return MoveOn("unreachable", Refused(502, "the upstream API could not be reached"))
        if answer.status == 429:
            fields = Headers(answer.headers)
            await cooldowns.cool(key.id, cooldown_until(429, fields, now), now, exhausted_kind(fields))
        if answer.status not in RETRYABLE:
            return _passed_on(answer, {}, now)
        log(f"upstream key {key.id} answered {answer.status}; trying the next key")
        cooling = await cooldowns.current(now) if answer.status == 429 else {}
        moved = MoveOn(f"answered {answer.status}", answer=_passed_on(answer, cooling, now))
    return moved
