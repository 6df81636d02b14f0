"""The per-session breaker: too many requests in the window, or too much spend in a day."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.errors import Refused
from relay.http.messages import Headers, Request
from relay.limits import session_breaker
from relay.pipeline.app import handle
from relay.services import Services
from relay.usage import pricing
from tests.fakes.platform import SqliteDatabase
from tests.fakes.streams import read_body
from tests.unit.limits.test_spend_caps import USAGE, BillingTransport

NOW = 1_800_000_000.0
KEY = "static-client-key"


def test_a_session_over_its_requests_in_the_window_is_stopped_until_it_has_been_quiet():
    db = SqliteDatabase()
    for n in range(5):
        asyncio.run(session_breaker.count(db, "s-1", 5, 10, NOW + n))
    with pytest.raises(Refused) as stopped:
        asyncio.run(session_breaker.count(db, "s-1", 5, 10, NOW + 6))
    assert stopped.value.status == 429 and dict(stopped.value.headers)["x-should-retry"] == "false"
    assert "6 requests in 10 minutes" in stopped.value.message and "RELAY_SESSION_MAX_REQUESTS" in stopped.value.message
    asyncio.run(session_breaker.count(db, "s-2", 5, 10, NOW + 6))  # another session is not held
    with pytest.raises(Refused):
        asyncio.run(session_breaker.count(db, "s-1", 5, 10, NOW + 9 * 60))  # still inside the window
    asyncio.run(session_breaker.count(db, "s-1", 5, 10, NOW + 21 * 60))  # quiet for the window: counted anew
    minutes = [row[0] for row in db.connection.execute("SELECT minute FROM session_requests")]
    assert min(minutes) > int(NOW // 60)  # counts no window needs were let go


ENV = {"RELAY_CLIENT_KEYS": KEY, "ANTHROPIC_API_KEYS": "sk-up"}


def _ask(services, env, session):
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": []}).encode()
    headers = Headers([("x-api-key", KEY), ("x-claude-code-session-id", session)])

    async def run():
        response = await handle(Request("POST", "/v1/messages", "", headers, read_body(body)), env, services)
        if response.tap is not None:
            response.tap.feed(response.body if isinstance(response.body, bytes) else b"")
            await response.tap.finish(False)
        await services.defer.settle()
        return response

    return asyncio.run(run())


def test_a_session_over_its_daily_spend_is_stopped_and_others_go_on():
    cost = pricing.usd(pricing.cost(pricing.price_of("claude-sonnet-4-5"), USAGE)[0])
    env = {**ENV, "RELAY_SESSION_MAX_USD": str(1.5 * cost)}
    services = Services(transport=BillingTransport(), db=SqliteDatabase())
    assert [_ask(services, env, "loop").status for _ in range(3)] == [200, 200, 429]
    stopped = _ask(services, env, "loop")
    error = json.loads(stopped.body)["error"]
    assert error["type"] == "billing_error" and "session loop has reached its daily spend cap" in error["message"]
    assert "RELAY_SESSION_MAX_USD" in error["message"]
    assert _ask(services, env, "another").status == 200
    assert services.transport.calls == 3


def test_the_request_breaker_through_the_pipeline():
    env = {**ENV, "RELAY_SESSION_MAX_REQUESTS": "2", "RELAY_SESSION_WINDOW_MINUTES": "5"}
    services = Services(transport=BillingTransport(), db=SqliteDatabase())
    assert [_ask(services, env, "loop").status for _ in range(3)] == [200, 200, 429]
    assert services.transport.calls == 2
