"""Calling the provider: its URL, a key from its pool, its answer handed back unbuffered.

A 429, 529 or 5xx arrives before any byte has reached the client, so relay can still
try the next healthy key: the client sees one answer. Only 429 cools a key down; the
others say the provider is struggling, not that this key is spent. Once a response is
passed on, there is no retry: a mid-stream error frame reaches the client as it is.
"""

from __future__ import annotations

import math
from typing import Optional

from .config import Settings
from .errors import error_response
from .headers import client_response_headers, upstream_request_headers
from .http import Headers, Request, Response, UpstreamTimeout, UpstreamUnreachable
from .keys import RETRYABLE, Cooldowns, cooldown_until, pool, preference
from .routes import Route
from .services import Services
from .usage import Exchange


def credential(surface: str, key: str) -> list[tuple[str, str]]:
    """The upstream key in the form that provider expects."""
    if surface == "openai":
        return [("authorization", f"Bearer {key}")]
    return [("x-api-key", key)]


def upstream_url(base: str, route: Route, query: str) -> str:
    return base + route.upstream_path + (f"?{query}" if query else "")


def _wait(cooling: dict[str, float], now: float) -> int:
    return max(1, math.ceil(min(cooling.values()) - now))


def _passed_on(answer: Response, cooling: dict[str, float], now: float) -> Response:
    headers = client_response_headers(Headers(answer.headers))
    if answer.status == 429 and cooling:
        # The client may come back as soon as any key of the pool has recovered.
        headers = [(n, v) for n, v in headers if n != "retry-after"] + [("retry-after", str(_wait(cooling, now)))]
    return Response(answer.status, headers, answer.body)


async def forward(request: Request, route: Route, body: Optional[bytes], settings: Settings,
                  services: Services, exchange: Exchange, now: float) -> Response:
    """Send the request on with the first healthy key that does not answer a retryable status."""
    session = exchange.session_id
    exchange.provider = route.surface
    keys = pool(route.surface, settings.upstream_keys[route.surface])
    if not keys:
        return error_response(route.surface, 500, f"relay has no upstream key configured for {route.surface}")
    cooldowns = Cooldowns(route.surface, services)
    cooling = await cooldowns.current(now)
    if not session:
        services.state.turn += 1
    candidates = [key for key in preference(keys, session, services.state.turn) if key.id not in cooling]
    if not candidates:
        wait = _wait(cooling, now)
        return error_response(route.surface, 429, f"every upstream key of {route.surface} is rate limited; "
                              f"retry after {wait}s", (("retry-after", str(wait)),))
    url = upstream_url(settings.upstream_urls[route.surface], route, request.query)
    transport = services.transport
    last = candidates[-1]
    for key in candidates:
        headers = upstream_request_headers(request.headers, credential(route.surface, key.secret))
        exchange.upstream_key_id = key.id
        try:
            answer = await transport.send(request.method, url, headers, body, settings.upstream_timeout)
        except UpstreamTimeout:
            return error_response(route.surface, 504, f"the upstream API did not answer within "
                                  f"{settings.upstream_timeout:g}s (RELAY_UPSTREAM_TIMEOUT_SECONDS)")
        except UpstreamUnreachable:
            return error_response(route.surface, 502, "the upstream API could not be reached")
        if answer.status == 429:
            await cooldowns.cool(key.id, cooldown_until(429, Headers(answer.headers), now), now)
        if answer.status not in RETRYABLE or key is last:
            cooling = await cooldowns.current(now) if answer.status == 429 else {}
            return _passed_on(answer, cooling, now)
        print(f"relay: upstream key {key.id} answered {answer.status}; trying the next key")
        await transport.discard(answer.body)
