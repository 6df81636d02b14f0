"""Per-key limits: rate tiers, stream slots in D1, monthly spend."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from devtools.runtime import ROOT
from relay import times
from relay.config import ConfigError, Settings
from relay.http.messages import Headers, Request
from relay.identity import key_store
from relay.limits import key_limits
from relay.limits.key_limits import counting_for, retry_after, tier_for
from relay.pipeline.app import handle
from relay.services import IsolateState, Services
from tests.fakes.platform import CountingDatabase, CountingLimiter, RecordingTransport, SqliteDatabase
from tests.fakes.streams import read_body

WRANGLER_TOML = ROOT / "wrangler.toml"


NOW = 1_700_000_000.0


def test_the_largest_tier_not_above_the_limit():
    tiers = {10: None, 100: None, 400: None}
    assert tier_for(400, tiers) == 400
    assert tier_for(399, tiers) == 100
    assert tier_for(5000, tiers) == 400
    assert tier_for(9, tiers) is None


def test_requests_over_the_tier_get_a_wait_within_the_minute():
    tiers = {2: CountingLimiter(2), 5: CountingLimiter(5)}
    now = 1_700_000_085.0  # 45 s into a minute (1_700_000_040 is a whole one)
    waits = [asyncio.run(retry_after("rk_1", 3, tiers, now, IsolateState())) for _ in range(4)]
    assert waits == [None, None, 15, 15]  # what is left of the minute
    assert tiers[5].counts == {}  # a limit of 3 never uses the 5 tier


def test_each_key_counts_on_its_own():
    tiers, state = {1: CountingLimiter(1)}, IsolateState()
    assert asyncio.run(retry_after("rk_a", 1, tiers, NOW, state)) is None
    assert asyncio.run(retry_after("rk_b", 1, tiers, NOW, state)) is None
    assert asyncio.run(retry_after("rk_a", 1, tiers, NOW, state)) is not None


def test_a_limit_below_every_tier_refuses():
    assert asyncio.run(retry_after("rk_1", 5, {10: CountingLimiter(10)}, NOW, IsolateState())) == 60


DECLARED_TIERS = dict.fromkeys(map(int, re.findall(r'^name = "RPM_LIMIT_(\d+)"', WRANGLER_TOML.read_text(), re.M)))


def test_a_large_tier_is_counted_in_batches_of_at_most_a_200th_of_it_on_a_tier_that_divides_it():
    plans = {tier: counting_for(tier, DECLARED_TIERS) for tier in DECLARED_TIERS}
    assert plans == {
        10: (10, 1),
        30: (30, 1),
        60: (60, 1),
        100: (100, 1),
        200: (200, 1),
        400: (200, 2),
        600: (200, 3),
        1000: (200, 5),
        2000: (200, 10),
        5000: (200, 25),
    }
    assert counting_for(5000, {5000: None, 3000: None}) == (5000, 1)  # no tier divides it


class MinuteLimiter:
    """A Rate Limiting binding as miniflare counts: `limit` per key and wall-clock minute."""

    def __init__(self, limit: int, clock: list[float]) -> None:
        self.limit, self.clock, self.calls = limit, clock, 0
        self.counts: dict[tuple[str, int], int] = {}

    async def allow(self, key: str) -> bool:
        self.calls += 1
        window = (key, int(self.clock[0] // 60))
        if self.counts.get(window, 0) >= self.limit:
            return False
        self.counts[window] = self.counts.get(window, 0) + 1
        return True


def _admitted(key_id, rpm, tiers, clock, state, count):
    async def each():
        return [await retry_after(key_id, rpm, tiers, clock[0], state) is None for _ in range(count)]

    return asyncio.run(each()).count(True)


def test_a_key_counted_in_batches_gets_its_whole_tier_in_one_isolate_for_a_binding_call_per_batch():
    clock = [NOW]  # a whole minute
    tiers = {200: MinuteLimiter(200, clock), 1000: MinuteLimiter(1000, clock)}
    state = IsolateState()
    assert _admitted("rk_1", 1000, tiers, clock, state, 1001) == 1000
    assert tiers[200].calls == 201 and tiers[1000].calls == 0  # 200 counts of 5, and the refused one
    clock[0] += 60
    assert _admitted("rk_1", 1000, tiers, clock, state, 5) == 5  # a new minute, a new count
    assert tiers[200].calls == 202


def test_isolates_sharing_a_key_never_get_more_than_its_tier_together():
    clock = [NOW]
    tiers = {200: MinuteLimiter(200, clock), 1000: MinuteLimiter(1000, clock)}
    isolates = [IsolateState() for _ in range(3)]
    admitted = sum(_admitted("rk_1", 1000, tiers, clock, isolates[turn % 3], 1) for turn in range(1200))
    # Each isolate may hold up to 4 requests paid for and unused when the others are refused.
    assert 1000 - 3 * 4 <= admitted <= 1000


def test_a_batch_paid_for_in_one_minute_is_not_spent_in_the_next():
    clock = [NOW]
    tiers = {200: MinuteLimiter(200, clock), 1000: MinuteLimiter(1000, clock)}
    state = IsolateState()
    assert _admitted("rk_1", 1000, tiers, clock, state, 1) == 1  # paid for 4 more this minute
    clock[0] += 60
    assert _admitted("rk_1", 1000, tiers, clock, state, 1) == 1
    assert tiers[200].calls == 2  # the new minute's request was counted, not taken from the batch


def test_the_lowest_rpm_limit_is_the_lowest_tier_wrangler_toml_declares():
    assert DECLARED_TIERS and min(DECLARED_TIERS) == key_limits.MIN_RPM


def test_a_default_rpm_below_the_lowest_tier_is_a_configuration_error():
    with pytest.raises(ConfigError, match="RELAY_DEFAULT_RPM must be at least 10"):
        Settings.from_env({"RELAY_DEFAULT_RPM": "9"})
    assert Settings.from_env({"RELAY_DEFAULT_RPM": "10"}).default_rpm == 10


def test_stream_slots_are_taken_up_to_the_limit_and_freed():
    db = SqliteDatabase()
    now = 1_700_000_000.0
    first, second = (asyncio.run(key_limits.open_stream(db, "rk_a", 2, now)) for _ in range(2))
    assert first and second and first != second
    assert asyncio.run(key_limits.open_stream(db, "rk_a", 2, now)) is None
    assert asyncio.run(key_limits.open_stream(db, "rk_b", 2, now))  # another key has its own slots
    asyncio.run(key_limits.close_stream(db, first, now))
    assert asyncio.run(key_limits.open_stream(db, "rk_a", 2, now))


def test_a_slot_left_by_a_dead_isolate_lapses():
    db = SqliteDatabase()
    then = 1_700_000_000.0
    assert asyncio.run(key_limits.open_stream(db, "rk_a", 1, then))
    assert asyncio.run(key_limits.open_stream(db, "rk_a", 1, then + 60)) is None
    assert asyncio.run(key_limits.open_stream(db, "rk_a", 1, then + key_limits.STREAM_MAX_SECONDS + 1))


def test_spend_is_read_once_per_cache_window_plus_what_this_isolate_recorded():
    db = SqliteDatabase()
    state = IsolateState()
    now = time.time()

    async def add_row(cost, when):
        await db.run(
            "INSERT INTO usage (created_at, day, key_id, surface, method, path, status, cost_usd) "
            "VALUES (?, ?, 'rk_a', 'anthropic', 'POST', '/v1/messages', 200, ?)",
            (times.iso(when), times.iso(when)[:10], cost),
        )

    asyncio.run(add_row(1.5, now))
    asyncio.run(add_row(100.0, key_limits.month_start(now) - 1))  # last month: not counted
    assert asyncio.run(key_limits.spent_this_month(db, state, "rk_a", now, 30)) == 1.5
    asyncio.run(add_row(2.0, now))  # written by another isolate
    key_limits.note_spend(state, "rk_a", 0.25)  # recorded by this one
    assert asyncio.run(key_limits.spent_this_month(db, state, "rk_a", now + 1, 30)) == 1.75
    assert asyncio.run(key_limits.spent_this_month(db, state, "rk_a", now + 31, 30)) == 3.5


def _stream_request(services, key):
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 8, "stream": True, "messages": []}).encode()
    request = Request("POST", "/v1/messages", "", Headers([("x-api-key", key)]), read_body(body))
    return asyncio.run(handle(request, {"ANTHROPIC_API_KEYS": "sk-up"}, services))


def test_a_stream_start_costs_one_d1_round_trip_once_the_key_and_its_spend_are_cached():
    """A key with max_concurrent_streams and a budget: its first stream reads the key, its
    spend and takes a slot; the next ones only take a slot, in one statement that also
    says whether it got one (it took two: the insert, then a read of it)."""
    services = Services(transport=RecordingTransport(), db=CountingDatabase())
    _, key = asyncio.run(
        key_store.create_key(services.db, now=time.time(), name="k", max_concurrent_streams=2, monthly_budget_usd=50.0)
    )
    services.db.statements.clear()
    assert _stream_request(services, key).status == 200
    db = services.db
    assert (db.calls("relay_keys"), db.calls("usage"), db.calls("open_streams")) == (1, 1, 1)
    for expected in (200, 429):  # the second slot, then none left
        db.statements.clear()
        assert _stream_request(services, key).status == expected
        assert len(db.statements) == 1 and db.calls("open_streams") == 1
