"""Where a request meets its spend caps: which apply, the hold before it goes upstream,
and the settlement once it has ended (spend_caps.py says how they count)."""

from __future__ import annotations

from typing import Any

from relay.http.errors import Refused
from relay.limits import alerts, cap_headers, session_breaker, spend_caps
from relay.limits.spend_caps import Cap, Hold
from relay.pipeline.endpoints import FREE_ENDPOINTS, Route
from relay.services import Services


async def caps_for(
    services: Services, key_id: str, billing_tag: str | None, now: float, cache_seconds: int
) -> list[Cap]:
    """The caps a request of this key counts against; refused (failing closed) when
    relay cannot read them."""
    if services.db is None:
        return []
    try:
        return await spend_caps.caps_of(
            services.db, services.state, spend_caps.owners(key_id, billing_tag), now, cache_seconds
        )
    except Exception as exc:
        print(f"relay: spend caps not read ({type(exc).__name__}); the request is refused")
        raise cap_headers.unreadable() from None


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
    try:
        held = await spend_caps.hold(services.db, caps, amount, now)
        held.alerts = alerting
        return held
    except spend_caps.CapReached as reached:
        raise cap_headers.cap_reached(reached.standing, now) from None
    except Exception as exc:
        print(f"relay: spend cap hold not taken ({type(exc).__name__}); the request is refused")
        raise cap_headers.unreadable() from None


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
        print(f"relay: session requests not counted ({type(exc).__name__}); the request goes on")


async def settle(services: Services, held: Hold, cost: float | None) -> None:
    """Count what the request cost and let its hold go; a failure is logged (the hold
    lapses by itself after spend_caps.HOLD_SECONDS)."""
    if services.db is None:
        return
    try:
        settled = await spend_caps.settle(services.db, held, cost, services.clock())
    except Exception as exc:
        print(f"relay: spend cap hold {held.id} not settled ({type(exc).__name__}); it lapses by itself")
        return
    if held.alerts is not None and settled:
        try:
            await alerts.after_settlement(services, held.alerts, settled)
        except Exception as exc:
            print(f"relay: spend cap alerts not checked ({type(exc).__name__})")
