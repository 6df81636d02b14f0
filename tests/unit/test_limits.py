"""Per-key rate limits over fixed-limit tiers."""

from __future__ import annotations

import asyncio

from relay.limits import retry_after, tier_for
from tests.fakes.platform import CountingLimiter


def test_the_largest_tier_not_above_the_limit():
    tiers = {10: None, 100: None, 400: None}
    assert tier_for(400, tiers) == 400
    assert tier_for(399, tiers) == 100
    assert tier_for(5000, tiers) == 400
    assert tier_for(9, tiers) is None


def test_requests_over_the_tier_get_a_wait_within_the_minute():
    tiers = {2: CountingLimiter(2), 5: CountingLimiter(5)}
    waits = [asyncio.run(retry_after("rk_1", 3, tiers)) for _ in range(4)]
    assert waits[:2] == [None, None]
    assert all(1 <= wait <= 60 for wait in waits[2:])
    assert tiers[5].counts == {}  # a limit of 3 never uses the 5 tier


def test_each_key_counts_on_its_own():
    tiers = {1: CountingLimiter(1)}
    assert asyncio.run(retry_after("rk_a", 1, tiers)) is None
    assert asyncio.run(retry_after("rk_b", 1, tiers)) is None
    assert asyncio.run(retry_after("rk_a", 1, tiers)) is not None


def test_a_limit_below_every_tier_refuses():
    assert asyncio.run(retry_after("rk_1", 5, {10: CountingLimiter(10)})) == 60
