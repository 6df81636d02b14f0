"""Per-relay-key request rate limits, on Workers Rate Limiting bindings.

A binding's limit is fixed in wrangler.toml, so relay declares one binding per tier
(`RPM_LIMIT_<n>`: n requests per 60 s) and enforces a key's `rpm_limit` with the
largest tier not above it: never more than the key was given. Counting is per
Cloudflare location and eventually consistent (the platform's documented accuracy).
"""

from __future__ import annotations

import time
from typing import Mapping, Optional

from .services import RateLimiter

RPM_PREFIX = "RPM_LIMIT_"
PERIOD_SECONDS = 60


def tier_for(rpm: int, tiers: Mapping[int, RateLimiter]) -> Optional[int]:
    """The largest configured tier not above `rpm`; None when every tier is above it."""
    fitting = [tier for tier in tiers if tier <= rpm]
    return max(fitting) if fitting else None


async def retry_after(key_id: str, rpm: int, tiers: Mapping[int, RateLimiter]) -> Optional[int]:
    """Count one request of `key_id`: None when allowed, else seconds to wait before retrying.

    The wait is an estimate: the time left in the current minute window.
    """
    tier = tier_for(rpm, tiers)
    if tier is None:
        return PERIOD_SECONDS
    if await tiers[tier].allow(key_id):
        return None
    return max(1, PERIOD_SECONDS - int(time.time()) % PERIOD_SECONDS)
