"""Spend caps: UTC windows, holds taken in one statement, settlement, the pipeline's refusal
and the standing Claude Code reads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime

import pytest

from relay.http.messages import Headers, Request, Response
from relay.identity import key_store
from relay.limits import cap_headers, spend_caps
from relay.limits.spend_caps import HOLD_SECONDS, Owner, window
from relay.pipeline.app import handle
from relay.services import Services
from relay.usage import pricing
from tests.fakes.platform import SqliteDatabase
from tests.fakes.streams import read_body

NOW = datetime(2027, 1, 13, 15, 30, tzinfo=UTC).timestamp()  # a Wednesday


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "period, start, end",
    [
        ("day", "2027-01-13T00:00", "2027-01-14T00:00"),
        ("week", "2027-01-11T00:00", "2027-01-18T00:00"),  # Monday to Monday
        ("month", "2027-01-01T00:00", "2027-02-01T00:00"),
    ],
)
def test_windows_are_utc_days_weeks_from_monday_and_calendar_months(period, start, end):
    assert window(period, NOW) == (_at(start), _at(end))
    assert window(period, _at(end))[0] == _at(end)  # the next window starts at the reset
    assert window(period, _at(end) - 0.001) == (_at(start), _at(end))


def test_december_rolls_into_january():
    assert window("month", _at("2027-12-31T23:59")) == (_at("2027-12-01T00:00"), _at("2028-01-01T00:00"))


def test_a_request_counts_against_its_key_its_tag_and_relay():
    assert spend_caps.owners("rk_1", "team-a") == (Owner("key", "rk_1"), Owner("tag", "team-a"), Owner("relay", ""))
    assert spend_caps.owners("rk_1", None) == (Owner("key", "rk_1"), Owner("relay", ""))
    signed_in = spend_caps.owners("prs_1", "eng", "ann@example.com", "engineering")
    assert signed_in == (
        Owner("key", "prs_1"),
        Owner("tag", "eng"),
        Owner("person", "ann@example.com"),
        Owner("group", "engineering"),
        Owner("relay", ""),
    )
    assert [cap.pooled for cap in (spend_caps.Cap("c", owner, "day", 1.0) for owner in signed_in)] == [
        False,
        True,
        False,
        True,
        True,
    ]


def test_the_estimate_bounds_the_cost_of_what_was_asked():
    price = pricing.price_of("claude-sonnet-4-5")
    body = b"x" * 4000  # 1000 tokens at most, as relay counts
    held = spend_caps.estimate({"max_tokens": 2000}, len(body), "claude-sonnet-4-5")
    billed = pricing.usd(pricing.cost(price, {"input_tokens": 1000, "output_tokens": 2000})[0])
    assert held >= billed and held == pytest.approx((1000 * price.cache_write_5m + 2000 * price.output) / 1e6)
    unbounded = spend_caps.estimate({}, len(body), "gpt-4o")
    assert unbounded == pytest.approx(
        pricing.usd(pricing.cost(pricing.price_of("gpt-4o"), {"cache_creation_tokens": 1000, "output_tokens": 4096})[0])
    )
    assert spend_caps.estimate({"max_tokens": 10}, 10, "no-such-model") is None


def _caps(db, *specs):
    async def make():
        for owner, period, limit in specs:
            await spend_caps.set_cap(db, owner, period, limit, NOW)
        return await spend_caps.all_caps(db)

    return asyncio.run(make())


def test_holds_admit_while_anything_is_left_then_refuse_naming_the_cap():
    db = SqliteDatabase()
    caps = _caps(db, (Owner("key", "rk_1"), "day", 1.0))
    holds = [asyncio.run(spend_caps.hold(db, caps, 0.4, NOW)) for _ in range(3)]  # 0, 0.4, 0.8 held before
    assert [h.standings[0].held for h in holds] == pytest.approx([0, 0.4, 0.8])
    with pytest.raises(spend_caps.CapReached) as refused:
        asyncio.run(spend_caps.hold(db, caps, 0.4, NOW))
    assert refused.value.standing.held == pytest.approx(1.2)  # at most one estimate over the limit
    asyncio.run(spend_caps.settle(db, holds[0], 0.05, NOW))
    [standing] = asyncio.run(spend_caps.standings(db, caps, NOW))
    assert (standing.spent, standing.held) == pytest.approx((0.05, 0.8))


def test_concurrent_holds_never_pass_the_limit_by_more_than_one_estimate():
    """Fifty requests at once (every isolate's, as D1 runs them one after another)."""
    db = SqliteDatabase()
    caps = _caps(db, (Owner("key", "rk_1"), "day", 1.0))

    async def race():
        return await asyncio.gather(*(spend_caps.hold(db, caps, 0.3, NOW) for _ in range(50)), return_exceptions=True)

    taken = [result for result in asyncio.run(race()) if isinstance(result, spend_caps.Hold)]
    assert len(taken) == 4  # 0, 0.3, 0.6, 0.9 held before each: 1.2 in all, under 1 + 0.3


def test_every_cap_must_have_room_or_none_is_held():
    db = SqliteDatabase()
    caps = _caps(db, (Owner("key", "rk_1"), "day", 5.0), (Owner("tag", "t"), "week", 0.0))
    with pytest.raises(spend_caps.CapReached) as refused:
        asyncio.run(spend_caps.hold(db, caps, 0.1, NOW))
    assert refused.value.standing.cap.owner == Owner("tag", "t")
    assert db.connection.execute("SELECT COUNT(*) FROM spend_holds").fetchone()[0] == 0


def test_spend_counts_in_its_window_and_a_new_window_starts_empty():
    db = SqliteDatabase()
    caps = _caps(db, (Owner("relay", ""), "day", 1.0))
    held = asyncio.run(spend_caps.hold(db, caps, 0.5, NOW))
    asyncio.run(spend_caps.settle(db, held, 1.5, NOW))
    with pytest.raises(spend_caps.CapReached):
        asyncio.run(spend_caps.hold(db, caps, 0.5, NOW + 60))
    tomorrow = window("day", NOW)[1] + 1
    assert asyncio.run(spend_caps.hold(db, caps, 0.5, tomorrow)).standings[0].spent == 0


def test_a_hold_never_settled_lapses():
    db = SqliteDatabase()
    caps = _caps(db, (Owner("key", "rk_1"), "month", 1.0))
    asyncio.run(spend_caps.hold(db, caps, 5.0, NOW))  # its isolate died with it
    with pytest.raises(spend_caps.CapReached):
        asyncio.run(spend_caps.hold(db, caps, 0.1, NOW + 60))
    assert asyncio.run(spend_caps.hold(db, caps, 0.1, NOW + HOLD_SECONDS + 1)).standings[0].held == 0


# --- through the pipeline -------------------------------------------------------------

KEY = "static-client-key"
ENV = {"RELAY_CLIENT_KEYS": KEY, "ANTHROPIC_API_KEYS": "sk-up", "OPENAI_API_KEYS": "sk-up-openai"}
USAGE = {"input_tokens": 1000, "output_tokens": 100}


class BillingTransport:
    """Answers each Messages call with a usage that costs about $0.0045 at Sonnet prices,
    with the upstream's own rate-limit fields; counts the calls."""

    def __init__(self):
        self.calls = 0

    async def send(self, method, url, headers, body, timeout=None):
        self.calls += 1
        payload = {"type": "message", "model": "claude-sonnet-4-5", "content": [], "usage": USAGE}
        fields = [("content-type", "application/json"), ("anthropic-ratelimit-requests-remaining", "3999")]
        return Response(200, fields, json.dumps(payload).encode())

    async def discard(self, body):
        pass


def _ask(services, path="/v1/messages", model="claude-sonnet-4-5"):
    body = json.dumps({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]})
    headers = Headers([("x-api-key", KEY), ("authorization", f"Bearer {KEY}")])
    request = Request("POST", path, "", headers, read_body(body.encode()))

    async def run():
        response = await handle(request, ENV, services)
        if response.tap is not None:
            response.tap.feed(response.body if isinstance(response.body, bytes) else b"")
            await response.tap.finish(False)
        await services.defer.settle()
        return response

    return asyncio.run(run())


def _capped(limit, period="day", owner=None):
    services = Services(transport=BillingTransport(), db=SqliteDatabase())
    owner = owner or Owner("key", "static-" + hashlib.sha256(KEY.encode()).hexdigest()[:8])
    asyncio.run(spend_caps.set_cap(services.db, owner, period, limit, NOW))
    return services


def test_a_capped_key_is_refused_before_the_upstream_once_its_cap_is_spent():
    cost = pricing.usd(pricing.cost(pricing.price_of("claude-sonnet-4-5"), USAGE)[0])
    services = _capped(2.5 * cost)
    answers = [_ask(services) for _ in range(4)]
    assert [answer.status for answer in answers] == [200, 200, 200, 429]  # 0, 1 and 2 costs spent before
    assert services.transport.calls == 3
    refused = answers[-1]
    error = json.loads(refused.body)["error"]
    assert error["type"] == "billing_error"
    assert f"daily spend cap of {cap_headers.usd(2.5 * cost)}" in error["message"] and "resets at" in error["message"]
    assert cap_headers.usd(0.001125) == "$0.001125" and cap_headers.usd(12.5) == "$12.50"
    fields = dict(refused.headers)
    assert fields["x-should-retry"] == "false" and int(fields["retry-after"]) > 0
    assert fields["anthropic-ratelimit-unified-status"] == "rejected"
    assert fields["anthropic-ratelimit-unified-overage-disabled-reason"] == "org_spend_cap_reached"
    assert fields["anthropic-ratelimit-unified-overage-period"] == "daily"
    assert "anthropic-ratelimit-unified-representative-claim" not in fields
    assert "anthropic-ratelimit-unified-overage-status" not in fields
    assert "anthropic-ratelimit-unified-overage-scope" not in fields  # a key's own cap

    openai = _ask(services, "/openai/v1/chat/completions", "gpt-4o")
    body = json.loads(openai.body)["error"]
    assert openai.status == 429 and body["code"] == "insufficient_quota"


def test_answers_to_a_capped_key_carry_its_standing_not_the_upstreams_limits():
    cost = pricing.usd(pricing.cost(pricing.price_of("claude-sonnet-4-5"), USAGE)[0])
    services = _capped(cost / 0.8, owner=Owner("relay", ""))
    first, second = _ask(services), _ask(services)
    fields = dict(first.headers)
    assert "anthropic-ratelimit-requests-remaining" not in fields
    assert fields["anthropic-ratelimit-unified-status"] == "allowed"
    assert float(fields["anthropic-ratelimit-unified-overage-utilization"]) == 0
    assert fields["anthropic-ratelimit-unified-overage-scope"] == "group_pool"  # relay's cap is shared
    reset = int(window("day", services.clock())[1])
    assert (
        fields["anthropic-ratelimit-unified-reset"] == fields["anthropic-ratelimit-unified-overage-reset"] == str(reset)
    )
    later = dict(second.headers)
    assert float(later["anthropic-ratelimit-unified-overage-utilization"]) == pytest.approx(0.8, abs=0.001)
    assert later["anthropic-ratelimit-unified-status"] == "allowed_warning"
    assert later["anthropic-ratelimit-unified-overage-surpassed-threshold"] == "0.75"


def test_an_uncapped_key_gets_the_upstreams_fields_and_no_standing():
    services = Services(transport=BillingTransport(), db=SqliteDatabase())
    fields = dict(_ask(services).headers)
    assert fields["anthropic-ratelimit-requests-remaining"] == "3999"
    assert not any(name.startswith(cap_headers.PREFIX) for name in fields)


def test_count_tokens_holds_nothing_and_an_unpriced_model_is_refused():
    services = _capped(0.0)
    assert _ask(services, "/v1/messages/count_tokens").status == 200
    answer = _ask(services, model="no-such-model")
    assert answer.status == 403 and "spend cap" in json.loads(answer.body)["error"]["message"]


class BrokenCapsDatabase(SqliteDatabase):
    broken = True

    async def all(self, sql, params=()):
        if self.broken and "spend_" in sql:
            raise RuntimeError("D1 is down")
        return await super().all(sql, params)


def test_caps_that_cannot_be_read_fail_closed_where_this_isolate_knows_the_callers():
    services = _capped(1000.0)
    services.db.__class__ = BrokenCapsDatabase
    services.db.broken = False
    assert _ask(services).status == 200  # the caps read, the key's among them
    services.db.broken = True
    services.state.spend_caps = (0.0, services.state.spend_caps[1])  # due to be read again
    answer = _ask(services)
    assert answer.status == 429 and services.transport.calls == 1
    assert dict(answer.headers)["anthropic-ratelimit-unified-overage-disabled-reason"] == "fetch_error"
    assert dict(answer.headers)["x-should-retry"] == "false"


def test_caps_never_read_do_not_stop_a_relay_whose_d1_is_down():
    """An isolate that could never read the caps knows of none for the caller: a D1 outage
    does not stop a relay with no caps (the requests' rows are lost, as before caps)."""
    services = Services(transport=BillingTransport(), db=BrokenCapsDatabase())
    assert _ask(services).status == 200 and services.transport.calls == 1


def _usage(services):
    headers = Headers([("authorization", f"Bearer {KEY}")])
    return asyncio.run(handle(Request("GET", "/api/oauth/usage", "", headers, read_body(b"")), ENV, services))


def test_the_usage_endpoint_shows_each_cap_and_the_one_that_binds():
    cost = pricing.usd(pricing.cost(pricing.price_of("claude-sonnet-4-5"), USAGE)[0])
    services = _capped(10 * cost)
    asyncio.run(spend_caps.set_cap(services.db, Owner("relay", ""), "month", 1000.0, NOW))
    for _ in range(4):
        _ask(services)
    answer = _usage(services)
    assert answer.status == 200
    usage = json.loads(answer.body)
    assert usage["extra_usage"]["monthly_limit"] == round(10 * cost * 100)
    assert usage["extra_usage"]["utilization"] == 40 and usage["extra_usage"]["currency"] == "USD"
    by_group = {row["group"]: row for row in usage["limits"]}
    assert by_group["daily"]["percent"] == 40 and by_group["daily"]["is_active"]
    assert by_group["monthly"]["percent"] == 0 and not by_group["monthly"]["is_active"]
    reset = window("day", services.clock())[1]
    assert by_group["daily"]["resets_at"] == datetime.fromtimestamp(reset, UTC).isoformat().replace("+00:00", "Z")


def test_the_usage_endpoint_without_a_cap_shows_the_spend_of_the_month_day_and_week():
    services = Services(transport=BillingTransport(), db=SqliteDatabase())
    _ask(services)  # the key's id as its rows have it
    [key_id] = [row[0] for row in services.db.connection.execute("SELECT key_id FROM usage")]
    for when, cost in ((time.time(), 1.23), (window("month", time.time())[0] - 86400 * 40, 5.0)):
        services.db.connection.execute(
            "INSERT INTO usage (created_at, day, key_id, surface, method, path, status, cost_usd) "
            "VALUES (?, ?, ?, 'anthropic', 'POST', '/v1/messages', 200, ?)",
            (key_store.iso(when), key_store.iso(when)[:10], key_id, cost),
        )
    usage = json.loads(_usage(services).body)
    assert usage["limits"] == []
    extra = usage["extra_usage"]
    assert extra["used_credits"] == extra["daily"]["used_credits"] == extra["weekly"]["used_credits"] == 123
    assert extra["monthly_limit"] is None
    assert _usage(Services(transport=BillingTransport(), db=SqliteDatabase())).status == 200
    wrong = asyncio.run(handle(Request("GET", "/api/oauth/usage", "", Headers([]), read_body(b"")), ENV, services))
    assert wrong.status == 401
