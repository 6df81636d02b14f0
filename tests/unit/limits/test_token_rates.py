"""Tokens-per-minute limits: the estimate counted when a request starts, corrected at its end."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from relay.http.errors import Refused
from relay.http.messages import Headers, Request
from relay.limits import token_rates
from relay.limits.token_rates import TokenLimit
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import SqliteDatabase
from tests.fakes.streams import read_body
from tests.unit.limits.test_spend_caps import USAGE, BillingTransport

NOW = 1_800_000_010.0  # 10 s into a minute


def test_a_minute_admits_while_both_counts_are_below_their_limits():
    db = SqliteDatabase()
    limit = TokenLimit("key", "rk_1", 1000, 300)
    for _ in range(3):  # output 0, 100, 200 before each
        asyncio.run(token_rates.take(db, limit, (10, 100), NOW))
    with pytest.raises(Refused) as over:
        asyncio.run(token_rates.take(db, limit, (10, 100), NOW + 1))
    assert over.value.status == 429 and "300 output tokens per minute" in over.value.message
    assert dict(over.value.headers)["retry-after"] == "49"
    assert asyncio.run(token_rates.take(db, limit, (10, 100), NOW + 60)).minute == int(NOW // 60) + 1


def test_the_estimate_is_corrected_to_what_was_used():
    db = SqliteDatabase()
    limit = TokenLimit("key", "rk_1", 100, None)
    held = asyncio.run(token_rates.take(db, limit, (500, 4096), NOW))  # over by itself: admitted, first
    with pytest.raises(Refused) as over:
        asyncio.run(token_rates.take(db, limit, (1, 1), NOW))
    assert "100 input tokens per minute" in over.value.message
    asyncio.run(token_rates.settle(db, held, {"input_tokens": 20, "cache_creation_tokens": 30, "output_tokens": 9}))
    assert tuple(db.connection.execute("SELECT input_tokens, output_tokens FROM token_minutes").fetchone()) == (50, 9)
    asyncio.run(token_rates.take(db, limit, (1, 1), NOW))


def test_the_estimate_counts_the_input_size_and_max_tokens():
    assert token_rates.estimate({"max_tokens": 64}, 401) == (101, 64)
    assert token_rates.estimate({}, 4) == (1, token_rates.DEFAULT_OUTPUT_TOKENS)


KEY = "static-client-key"
KEY_ID = "static-" + hashlib.sha256(KEY.encode()).hexdigest()[:8]


def test_through_the_pipeline_a_key_over_its_output_per_minute_waits_for_the_next_minute():
    clock = [NOW]
    services = Services(transport=BillingTransport(), db=SqliteDatabase(), clock=lambda: clock[0])
    asyncio.run(token_rates.set_limit(services.db, TokenLimit("key", KEY_ID, None, 250)))
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": []}).encode()

    def ask():
        request = Request("POST", "/v1/messages", "", Headers([("x-api-key", KEY)]), read_body(body))

        async def run():
            response = await handle(request, {"RELAY_CLIENT_KEYS": KEY, "ANTHROPIC_API_KEYS": "sk-up"}, services)
            response.tap.feed(response.body)
            await response.tap.finish(False)
            await services.defer.settle()
            return response

        return asyncio.run(run())

    # Each request reports 100 output tokens (USAGE), as it estimated: 0, 100, 200 before each.
    assert USAGE["output_tokens"] == 100
    assert [ask().status for _ in range(4)] == [200, 200, 200, 429]
    assert services.transport.calls == 3
    clock[0] += 60
    assert ask().status == 200
