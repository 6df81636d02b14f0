"""`GET /api/oauth/usage`: a caller's spend caps in dollars, as newer Claude Code clients
read them (the gateway contract's usage endpoint).

With caps: `extra_usage` for the cap that binds (the one spent, else the most used:
`monthly_limit` and `used_credits` in cents, `utilization` a whole percent) and one
`limits` row per cap (`kind: spend`, `group: daily|weekly|monthly`, `percent`,
`resets_at` the instant of the reset header, `is_active` for the binding one). Without:
`"limits": []` and what the key spent this month, day and week (UTC), from its audit rows.
"""

from __future__ import annotations

import json
from typing import Any

from relay import times
from relay.config import Settings
from relay.http.messages import Request, Response
from relay.identity import relay_keys
from relay.limits import spend_caps, spend_gate
from relay.limits.cap_headers import PERIOD_NAMES
from relay.limits.spend_caps import Standing
from relay.services import Services

PATH = "/api/oauth/usage"


def _binding(standings: list[Standing]) -> Standing:
    spent = [s for s in standings if s.spent_out]
    if spent:
        return max(spent, key=lambda s: s.reset)
    return max(standings, key=lambda s: s.utilization)


def capped(standings: list[Standing]) -> dict[str, Any]:
    active = _binding(standings)
    return {
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": round(active.cap.limit_usd * 100),
            "used_credits": int(active.spent * 100),
            "utilization": round(min(active.utilization, 1.0) * 100),
            "currency": "USD",
        },
        "limits": [
            {
                "kind": "spend",
                "group": PERIOD_NAMES[s.cap.period],
                "percent": round(min(s.utilization, 1.0) * 100),
                "resets_at": times.iso(s.reset),
                "is_active": s is active,
            }
            for s in standings
        ],
    }


async def uncapped(services: Services, key_id: str, now: float) -> dict[str, Any]:
    """What the key spent this UTC month, day and week, in cents, from its audit rows."""
    starts = {period: spend_caps.window(period, now)[0] for period in spend_caps.PERIODS}
    spent = {"day": 0.0, "week": 0.0, "month": 0.0}
    if services.db is not None:
        rows = await services.db.all(
            "SELECT "
            "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost_usd END), 0) AS day, "
            "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost_usd END), 0) AS week, "
            "COALESCE(SUM(CASE WHEN created_at >= ? THEN cost_usd END), 0) AS month "
            "FROM usage WHERE key_id = ? AND created_at >= ?",
            (
                *(times.iso(starts[period]) for period in ("day", "week", "month")),
                key_id,
                times.iso(min(starts.values())),
            ),
        )
        spent = {period: float(rows[0][period] or 0) for period in spent}

    def cents(period: str) -> int:
        return int(spent[period] * 100)

    return {
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": None,
            "used_credits": cents("month"),
            "utilization": None,
            "currency": "USD",
            "daily": {"limit": None, "used_credits": cents("day"), "utilization": None},
            "weekly": {"limit": None, "used_credits": cents("week"), "utilization": None},
        },
        "limits": [],
    }


async def handle(request: Request, settings: Settings, services: Services, now: float) -> Response:
    caller = await relay_keys.authenticate(request.headers, settings, services, now)
    caps = await spend_gate.caps_for(services, caller, now, settings.key_cache_seconds)
    if caps and services.db is not None:
        payload = capped(await spend_caps.standings(services.db, caps, now))
    else:
        payload = await uncapped(services, caller.key_id, now)
    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    return Response(200, headers, json.dumps(payload).encode())
