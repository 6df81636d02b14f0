"""Tokens-per-minute limits, input and output apart, per relay key (persons join with
sign-in), beside the requests-per-minute tiers.

Counted per owner and UTC minute in D1, so every isolate and location counts the same.
A request counts its estimate when it starts (its input at BYTES_PER_TOKEN, its max_tokens
of output: as Anthropic counts output against its own limit), in one statement that admits
it only while both counts of the minute are below their limits; when it has ended, the
count is corrected to what it used (input: uncached input and cache writes, which
providers count; output as reported). Like a provider's limit, the minute is fixed: a
client may use a limit's worth at the end of one minute and again at the start of the
next, and a request admitted below the limit may take the count past it by its own size.
Over a limit: 429 `rate_limit_error`, `retry-after` to the next minute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.http.errors import Refused
from relay.log import log
from relay.services import Database, IsolateState, Services
from relay.usage import estimate as usage_estimate

DEFAULT_OUTPUT_TOKENS = 4096
_UNLIMITED = 2**62


@dataclass(frozen=True)
class TokenLimit:
    owner_kind: str
    owner_id: str
    input_per_minute: int | None
    output_per_minute: int | None

    @property
    def owner(self) -> str:
        return f"{self.owner_kind}:{self.owner_id}"


@dataclass
class TokenHold:
    """What a request counted against a limit's minute when it started."""

    limit: TokenLimit
    minute: int
    input_tokens: int
    output_tokens: int


def _limit(row: dict[str, Any]) -> TokenLimit:
    return TokenLimit(row["owner_kind"], row["owner_id"], row["input_per_minute"], row["output_per_minute"])


async def all_limits(db: Database) -> list[TokenLimit]:
    rows = await db.all(
        "SELECT owner_kind, owner_id, input_per_minute, output_per_minute FROM token_limits "
        "ORDER BY owner_kind, owner_id"
    )
    return [_limit(row) for row in rows]


async def limit_of(
    db: Database, state: IsolateState, key_id: str, now: float, cache_seconds: float
) -> TokenLimit | None:
    """The key's limit; every limit is read at once, at most once per cache_seconds per isolate."""
    cached = state.token_limits
    if cached is None or now - cached[0] >= cache_seconds:
        cached = state.token_limits = (now, {limit.owner: limit for limit in await all_limits(db)})
    return cached[1].get(f"key:{key_id}")


async def set_limit(db: Database, limit: TokenLimit) -> None:
    if limit.input_per_minute is None and limit.output_per_minute is None:
        await db.run(
            "DELETE FROM token_limits WHERE owner_kind = ? AND owner_id = ?", (limit.owner_kind, limit.owner_id)
        )
        return
    await db.run(
        "INSERT INTO token_limits (owner_kind, owner_id, input_per_minute, output_per_minute) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner_kind, owner_id) DO UPDATE SET input_per_minute = excluded.input_per_minute, "
        "output_per_minute = excluded.output_per_minute",
        (limit.owner_kind, limit.owner_id, limit.input_per_minute, limit.output_per_minute),
    )


def estimate(parsed: Any, body_bytes: int) -> tuple[int, int]:
    """(input, output) tokens a request is counted for when it starts."""
    output = None
    if isinstance(parsed, dict):
        for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            value = parsed.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                output = value
                break
    return -(-body_bytes // usage_estimate.BYTES_PER_TOKEN), output or DEFAULT_OUTPUT_TOKENS


async def take(db: Database, limit: TokenLimit, tokens: tuple[int, int], now: float) -> TokenHold:
    """Count the request in its minute, or raise Refused when the minute is used up."""
    minute = int(now // 60)
    rows = await db.all(
        "INSERT INTO token_minutes (owner, minute, input_tokens, output_tokens) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (owner, minute) DO UPDATE SET input_tokens = input_tokens + excluded.input_tokens, "
        "output_tokens = output_tokens + excluded.output_tokens "
        "WHERE input_tokens < ? AND output_tokens < ? RETURNING input_tokens",
        (
            limit.owner,
            minute,
            *tokens,
            limit.input_per_minute if limit.input_per_minute is not None else _UNLIMITED,
            limit.output_per_minute if limit.output_per_minute is not None else _UNLIMITED,
        ),
    )
    if rows:
        if minute % 10 == 0:  # now and then, minutes no one needs go
            await db.run("DELETE FROM token_minutes WHERE owner = ? AND minute < ?", (limit.owner, minute - 1))
        return TokenHold(limit, minute, *tokens)
    used = await db.all(
        "SELECT input_tokens, output_tokens FROM token_minutes WHERE owner = ? AND minute = ?", (limit.owner, minute)
    )
    spent_input = used[0]["input_tokens"] if used else 0
    over = (
        f"{limit.input_per_minute} input tokens"
        if limit.input_per_minute is not None and spent_input >= limit.input_per_minute
        else f"{limit.output_per_minute} output tokens"
    )
    wait = max(1, math.ceil((minute + 1) * 60 - now))
    raise Refused(
        429,
        f"relay key {limit.owner_id} is over its limit of {over} per minute; retry after {wait}s",
        (("retry-after", str(wait)),),
    )


async def settle(db: Database, held: TokenHold, row: Mapping[str, Any]) -> None:
    """Correct the minute's counts from the estimate to what the request used (a request
    that reported no usage keeps its estimate: relay cannot tell it used less)."""
    if row.get("input_tokens") is None and row.get("output_tokens") is None:
        return
    used_input = (row.get("input_tokens") or 0) + (row.get("cache_creation_tokens") or 0)
    used_output = row.get("output_tokens") or 0
    await db.run(
        "UPDATE token_minutes SET input_tokens = MAX(0, input_tokens + ?), output_tokens = MAX(0, output_tokens + ?) "
        "WHERE owner = ? AND minute = ?",
        (used_input - held.input_tokens, used_output - held.output_tokens, held.limit.owner, held.minute),
    )


async def admit(
    services: Services, key_id: str, parsed: Any, body: bytes | None, now: float, cache_seconds: float
) -> TokenHold | None:
    """Count a request of the key against its limit, if it has one: its hold, or None
    without a limit. Refused over it; a count relay cannot make lets the request go
    (logged): this is a rate limit, not a budget."""
    if services.db is None:
        return None
    try:
        limit = await limit_of(services.db, services.state, key_id, now, cache_seconds)
        if limit is None:
            return None
        return await take(services.db, limit, estimate(parsed, len(body or b"")), now)
    except Refused:
        raise
    except Exception as exc:
        log(f"tokens per minute not counted ({type(exc).__name__}); the request goes on")
        return None


async def settle_safely(services: Services, held: TokenHold, row: Mapping[str, Any]) -> None:
    if services.db is None:
        return
    try:
        await settle(services.db, held, row)
    except Exception as exc:
        log(f"tokens per minute not corrected ({type(exc).__name__}); the estimate stands")
