"""Where a request meets its spend caps: which apply, the hold before it goes upstream,
and the settlement once it has ended (spend_caps.py says how they count)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from relay.http.errors import Refused
from relay.http.text_bounds import clip
from relay.identity.relay_keys import Caller
from relay.limits import alerts, cap_headers, session_breaker, spend_caps
from relay.limits.spend_caps import Cap, Hold
from relay.log import log
from relay.pipeline.endpoints import FREE_ENDPOINTS, Route
from relay.services import Services

# D1 calls of a hold or settlement that fail (a busy or restarting database) are made again
# up to ATTEMPTS times in all, RETRY_DELAY_SECONDS apart and longer each time.
T = TypeVar("T")
ATTEMPTS = 3
RETRY_DELAY_SECONDS = 0.05


def _problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {clip(str(exc), 160)}"


async def _again(call: Callable[[], Awaitable[T]]) -> T | None:
    """`call()`'s result, made again on a failure up to ATTEMPTS times (each failure
    logged); None when every attempt failed."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await call()
        except Exception as exc:
            log(f"spend cap D1 call failed ({_problem(exc)}), attempt {attempt} of {ATTEMPTS}")
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY_SECONDS * attempt)
    return None


async def caps_for(services: Services, caller: Caller, now: float, cache_seconds: int) -> list[Cap]:
    """The caps a request of this caller counts against. When D1 cannot be read, the caps this
    isolate read last stand: refused (failing closed) if they name any of the caller's, and
    when it never read them, the request goes on uncapped (a D1 outage does not stop a relay
    that has no caps; holding a cap's estimate needs D1 anyway, and fails closed)."""
    if services.db is None:
        return []
    try:
        caps = await spend_caps.current_caps(services.db, services.state, now, cache_seconds)
    except Exception as exc:
        known = services.state.spend_caps
        if known is None or not _of(caller, known[1]):
            log(f"spend caps not read ({type(exc).__name__}); none known for this caller: it goes on uncapped")
            return []
        log(f"spend caps not read ({type(exc).__name__}); the request is refused")
        raise cap_headers.unreadable() from None
    return _of(caller, caps) if caps else []  # most relays have none: whose they would be is not worked out


def _of(caller: Caller, caps: list[Cap]) -> list[Cap]:
    owners = spend_caps.owners(caller.key_id, caller.billing_tag, caller.person_email, caller.group)
    return [cap for cap in caps if cap.owner in owners]


def costs_something(route: Route) -> bool:
    """A request that may cost money: a JSON endpoint relay reads, but count_tokens."""
    return route.json_body and route.upstream_path not in FREE_ENDPOINTS


async def admit(
    services: Services,
    caps: list[Cap],
    parsed: Any,
    body: bytes | None,
    model: str | None,
    prices: tuple[Any, ...],
    now: float,
    alerting: alerts.Alerting | None = None,
) -> Hold:
    """Hold the request's estimate against its caps, or raise Refused (spent, or unreadable).
    The model is priced (policy.price_refusal has refused one that is not)."""
    assert services.db is not None
    amount = spend_caps.estimate(parsed, len(body or b""), model, prices) or 0.0
    for attempt in range(1, ATTEMPTS + 1):
        try:
            held = await spend_caps.hold(services.db, caps, amount, now)
            held.alerts = alerting
            return held
        except spend_caps.CapReached as reached:
            raise cap_headers.cap_reached(reached.standing, now) from None
        except Exception as exc:
            problem = _problem(exc)
            if attempt < ATTEMPTS:
                await asyncio.sleep(RETRY_DELAY_SECONDS * attempt)
    log(f"spend cap hold not taken ({problem}); the request is refused")
    raise cap_headers.unreadable()


async def count_session(services: Services, settings: Any, session: str, now: float) -> None:
    """Count one request of the session against RELAY_SESSION_MAX_REQUESTS; Refused past
    it. A count relay cannot make lets the request go (logged): the breaker stops loops,
    it is no budget."""
    assert services.db is not None
    try:
        await session_breaker.count(
            services.db, session, settings.session_max_requests, settings.session_window_minutes, now
        )
    except Refused:
        raise
    except Exception as exc:
        log(f"session requests not counted ({type(exc).__name__}); the request goes on")


async def settle(services: Services, held: Hold, cost: float | None) -> None:
    """Count what the request cost and let its hold go; a failure is logged (the hold
    lapses by itself after spend_caps.HOLD_SECONDS)."""
    if services.db is None:
        return
    db = services.db
    settled = await _again(lambda: spend_caps.add_cost(db, held, cost))
    if settled is None:
        log(f"the cost of spend cap hold {held.id} not counted; the hold lapses by itself")
        return

    async def release() -> bool:
        await spend_caps.release(db, held, services.clock())
        return True

    if await _again(release) is None:
        log(f"spend cap hold {held.id} not let go; it lapses by itself")
    if held.alerts is not None and settled:
        try:
            await alerts.after_settlement(services, held.alerts, settled)
        except Exception as exc:
            log(f"spend cap alerts not checked ({type(exc).__name__})")
