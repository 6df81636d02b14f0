"""Per-relay-key limits: requests per minute, streams open at once, and a monthly budget.

Requests per minute use Workers Rate Limiting bindings. A binding's limit is fixed in
wrangler.toml, so relay declares one binding per tier
(`RPM_LIMIT_<n>`: n requests per 60 s) and enforces a key's `rpm_limit` with the
largest tier not above it: never more than the key was given. Counting is per
Cloudflare location and eventually consistent (the platform's documented accuracy).

A binding call is the largest single cost of a small request (bench/: a round trip to the
counter), so a key with a large tier pays one call per batch of its requests: a tier T
that a smaller tier t divides (T = t x n, n at most T / BATCH_SHARE) is counted on t's
binding, and each count the binding grants pays for n requests of the key in this
isolate and minute; the isolate admits the next n - 1 without a call. Every admitted
request is paid for, so a key never gets more than T a minute. What an isolate has paid
for and not used when the minute ends is lost: a key busy in many isolates at once may be
refused up to (n - 1) requests per isolate (and per request of its in flight there) before T.
A key whose tier no smaller one divides finely enough is counted a call per request.

Open streams are rows in D1 (a single primary, so every isolate and location sees the
same count); a key's slot is taken and checked in one statement, so two requests racing
for the last slot cannot both get it. Only keys with a limit pay for those queries.

A monthly budget compares the key's spend this UTC month (the sum of its audit rows)
with its `monthly_budget_usd`. The sum is read from D1 at most once per
RELAY_KEY_CACHE_SECONDS per isolate; costs this isolate records meanwhile are added to
it, so a busy key cannot overspend by more than other isolates' last few seconds.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TypedDict

from relay import times
from relay.http.errors import Refused
from relay.services import Database, IsolateState, RateLimiter

# After this long an open-stream row no longer counts (an isolate may have died with it).
STREAM_MAX_SECONDS = 3600

RPM_PREFIX = "RPM_LIMIT_"
PERIOD_SECONDS = 60
# The lowest tier wrangler.toml declares (RPM_LIMIT_10). A limit below it fits no tier, so
# every request would be refused: the admin API refuses such a limit instead. A lower tier
# would need its own binding in wrangler.toml.
MIN_RPM = 10


# A batch of requests paid for by one binding count is at most this share of the key's
# tier: 1/200, e.g. 25 requests of a 5000-a-minute key, 5 of a 1000 one.
BATCH_SHARE = 200


def tier_for(rpm: int, tiers: Mapping[int, RateLimiter]) -> int | None:
    """The largest configured tier not above `rpm`; None when every tier is above it."""
    fitting = [tier for tier in tiers if tier <= rpm]
    return max(fitting) if fitting else None


def counting_for(tier: int, tiers: Mapping[int, RateLimiter]) -> tuple[int, int]:
    """The tier whose binding counts a key of tier `tier`, and how many of the key's
    requests one of its counts pays for: the largest batch within BATCH_SHARE."""
    most = max(1, tier // BATCH_SHARE)
    return min(((t, tier // t) for t in tiers if tier % t == 0 and tier // t <= most), key=lambda plan: plan[0])


async def retry_after(
    key_id: str, rpm: int, tiers: Mapping[int, RateLimiter], now: float, state: IsolateState
) -> int | None:
    """Count one request of `key_id`: None when allowed, else seconds to wait before retrying.

    The wait is an estimate: the time left in the current minute window.
    """
    tier = tier_for(rpm, tiers)
    if tier is None:
        return PERIOD_SECONDS
    counter, batch = counting_for(tier, tiers)
    if batch == 1:
        allowed = await tiers[counter].allow(key_id)
    else:
        allowed = await _paid_for(f"{key_id}/{batch}", batch, tiers[counter], int(now // PERIOD_SECONDS), state)
    return None if allowed else max(1, PERIOD_SECONDS - int(now) % PERIOD_SECONDS)


async def _paid_for(name: str, batch: int, counter: RateLimiter, minute: int, state: IsolateState) -> bool:
    """Whether a request counted in batches of `batch` under `name` is paid for: by a batch
    this isolate holds for this minute, else by a new count of the binding's."""
    if state.rate_batches[0] != minute:
        state.rate_batches = (minute, {})
    held = state.rate_batches[1]
    if held.get(name, 0) > 0:
        held[name] -= 1
        return True
    if not await counter.allow(name):
        return False
    if state.rate_batches[0] == minute:  # a batch of a minute gone by is not kept
        held[name] = held.get(name, 0) + batch - 1
    return True


async def check_rate(key_id: str, rpm: int, tiers: Mapping[int, RateLimiter], now: float, state: IsolateState) -> None:
    """Count one request of `key_id`; Refused (429, with retry-after) when it is over `rpm`."""
    wait = await retry_after(key_id, rpm, tiers, now, state)
    if wait is not None:
        raise Refused(
            429, f"relay key {key_id} is over its limit of {rpm} requests per minute", (("retry-after", str(wait)),)
        )


async def take_stream_slot(db: Database, key_id: str, limit: int, now: float) -> str:
    """One of the key's `limit` stream slots (`open_stream`); Refused (429) when all are taken."""
    slot = await open_stream(db, key_id, limit, now)
    if slot is None:
        raise Refused(429, f"relay key {key_id} already has {limit} streams open, its limit", (("retry-after", "1"),))
    return slot


async def open_stream(db: Database, key_id: str, limit: int, now: float) -> str | None:
    """Take one of the key's `limit` stream slots: its id, or None when all are taken. One
    D1 round trip on the client's path: the statement that takes the slot while fewer
    than `limit` are held also returns it when it did."""
    slot = secrets.token_hex(8)
    taken = await db.all(
        "INSERT INTO open_streams (id, key_id, started_at) SELECT ?, ?, ? WHERE "
        "(SELECT COUNT(*) FROM open_streams WHERE key_id = ? AND started_at > ?) < ? RETURNING id",
        (slot, key_id, now, key_id, now - STREAM_MAX_SECONDS, limit),
    )
    return slot if taken else None


async def close_stream(db: Database, slot: str, now: float) -> None:
    """Free the slot, and any other that has lapsed (STREAM_MAX_SECONDS before `now`)."""
    await db.run("DELETE FROM open_streams WHERE id = ? OR started_at < ?", (slot, now - STREAM_MAX_SECONDS))


class MonthSpend(TypedDict):
    """A key's spend this month as one isolate knows it (IsolateState.spend)."""

    month: float  # the month's start (month_start)
    read_at: float  # when `spent` was read from D1
    spent: float  # the sum of its audit rows then
    since: float  # what this isolate has recorded since


def month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp()


async def spent_this_month(db: Database, state: IsolateState, key_id: str, now: float, cache_seconds: int) -> float:
    """What the key's requests cost since the start of this UTC month, in dollars."""
    start = month_start(now)
    cached = state.spend.get(key_id)
    if cached is None or cached["month"] != start or now - cached["read_at"] >= cache_seconds:
        rows = await db.all(
            "SELECT COALESCE(SUM(cost_usd), 0) AS spent FROM usage WHERE key_id = ? AND created_at >= ?",
            (key_id, times.iso(start)),
        )
        cached = state.spend[key_id] = MonthSpend(month=start, read_at=now, spent=float(rows[0]["spent"]), since=0.0)
    return cached["spent"] + cached["since"]


async def check_budget(
    db: Database, state: IsolateState, key_id: str, budget: float, now: float, cache_seconds: int
) -> None:
    """Refused (402) when the key has spent its monthly `budget` (dollars) this month."""
    spent = await spent_this_month(db, state, key_id, now, cache_seconds)
    if spent >= budget:
        raise Refused(
            402, f"relay key {key_id} has spent its monthly budget of ${budget:.2f} (${spent:.2f} this month)"
        )


def note_spend(state: IsolateState, key_id: str | None, cost: float | None) -> None:
    """Count a cost this isolate recorded until the key's spend is next read from D1."""
    cached = state.spend.get(key_id) if key_id else None
    if cached is not None and cost:
        cached["since"] += cost
