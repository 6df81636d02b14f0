"""Relay keys from D1: accepted, refused, cached for a bounded time, limited by model and rate."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass

import pytest

from relay.config import Settings
from relay.http.errors import Refused
from relay.http.messages import Headers, Request
from relay.identity import key_store
from relay.identity.relay_keys import MISSES_CACHED, RECORDS_CACHED, Caller, authenticate
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import CountingDatabase, CountingLimiter, RecordingTransport, SqliteDatabase
from tests.fakes.streams import read_body

NOW = 1_800_000_000.0
ENV = {"ANTHROPIC_API_KEYS": "sk-up", "RELAY_KEY_CACHE_SECONDS": "30"}


def _services(**kwargs) -> Services:
    return Services(transport=RecordingTransport(), db=SqliteDatabase(), **kwargs)


def _create(services, **fields):
    return asyncio.run(key_store.create_key(services.db, now=NOW, **{"name": "alice", **fields}))


@dataclass(frozen=True)
class Refusal:
    """What `authenticate` raised, as a value assertions compare."""

    status: int
    message: str


async def _caller_or_refusal(headers, settings, services, now):
    try:
        return await authenticate(headers, settings, services, now)
    except Refused as refused:
        return Refusal(refused.status, refused.message)


def _auth(services, key, now=NOW, env=ENV):
    headers = Headers([("x-api-key", key)])
    return asyncio.run(_caller_or_refusal(headers, Settings.from_env(env), services, now))


def _post(services, key, model="claude-sonnet-4-5"):
    body = json.dumps({"model": model, "max_tokens": 1, "messages": []}).encode()

    request = Request("POST", "/v1/messages", "", Headers([("x-api-key", key)]), read_body(body))
    return asyncio.run(handle(request, ENV, services))


def test_a_created_key_authenticates_as_its_record():
    services = _services()
    record, key = _create(services, billing_tag="team-a", allowed_models=["claude-*"], rpm_limit=50)

    caller = _auth(services, key)
    assert caller == Caller(key_id=record["id"], billing_tag="team-a", allowed_models=("claude-*",), rpm_limit=50)
    _, cached_key = _create(services, cache_policy="system-1h")
    assert _auth(services, cached_key).cache_policy == "system-1h"


def test_only_the_hash_is_stored():
    services = _services()
    _, key = _create(services)
    rows = asyncio.run(services.db.all("SELECT * FROM relay_keys"))
    assert key not in json.dumps(rows)
    assert rows[0]["key_hash"] == key_store.key_hash(key)


def test_unknown_revoked_and_expired_keys_are_refused():
    services = _services()
    revoked_record, revoked = _create(services)
    asyncio.run(key_store.revoke_key(services.db, revoked_record["id"], NOW))
    _, expired = _create(services, name="bob", expires_at=NOW + 3600)

    assert _auth(services, "rk-unknown") == Refusal(401, "invalid relay key")
    assert _auth(services, revoked).status == 401 and "revoked" in _auth(services, revoked).message
    assert isinstance(_auth(services, expired, now=NOW), Caller)
    assert "expired" in _auth(services, expired, now=NOW + 3600).message


def test_lookups_are_cached_until_the_cache_time_has_passed():
    services = _services()
    record, key = _create(services)
    assert isinstance(_auth(services, key), Caller)
    asyncio.run(key_store.revoke_key(services.db, record["id"], NOW))

    assert isinstance(_auth(services, key, now=NOW + 29), Caller)  # still the cached lookup
    assert _auth(services, key, now=NOW + 30).status == 401  # revocation visible


def _auth_all(services, keys, now=NOW):
    settings = Settings.from_env(ENV)

    async def each():
        return [await _caller_or_refusal(Headers([("x-api-key", key)]), settings, services, now) for key in keys]

    return asyncio.run(each())


def test_a_flood_of_unknown_keys_costs_a_query_per_well_formed_one_and_leaves_valid_keys_cached():
    """20,000 random keys, half of them in the form of relay's keys: the others cost no D1
    query; each well-formed one costs one, and the keys that work stay cached (before, the
    whole cache was flushed past 10,000 lookups, and every valid key went to D1 again)."""
    services = Services(transport=RecordingTransport(), db=CountingDatabase())
    made = [_create(services, name=f"user-{n}") for n in range(3)]
    services.db.statements.clear()
    assert all(isinstance(caller, Caller) for caller in _auth_all(services, [key for _, key in made]))
    assert services.db.calls("relay_keys") == 3
    flood = [key_store.new_key() if n % 2 else "sk-" + secrets.token_urlsafe(30) for n in range(20_000)]

    refused = _auth_all(services, flood, now=NOW + 1)
    assert refused == [Refusal(401, "invalid relay key")] * 20_000
    assert services.db.calls("relay_keys") == 3 + 10_000
    assert len(services.state.unknown_keys) == MISSES_CACHED and len(services.state.relay_keys) == 3
    callers = _auth_all(services, [key for _, key in made], now=NOW + 2)
    assert [caller.key_id for caller in callers] == [record["id"] for record, _ in made]
    assert services.db.calls("relay_keys") == 3 + 10_000  # from the cache


def test_an_unknown_key_retried_costs_one_query_per_cache_window():
    services = Services(transport=RecordingTransport(), db=CountingDatabase())
    unknown = key_store.new_key()
    for now in (NOW, NOW + 1, NOW + 29):
        assert _auth(services, unknown, now=now) == Refusal(401, "invalid relay key")
    assert services.db.calls("relay_keys") == 1
    assert _auth(services, unknown, now=NOW + 30) == Refusal(401, "invalid relay key")
    assert services.db.calls("relay_keys") == 2


def test_a_key_made_after_it_was_tried_works_once_the_miss_is_old():
    services = _services()
    record, key = _create(services)
    asyncio.run(services.db.run("UPDATE relay_keys SET key_hash = 'elsewhere'"))
    assert _auth(services, key) == Refusal(401, "invalid relay key")
    asyncio.run(services.db.run("UPDATE relay_keys SET key_hash = ?", (key_store.key_hash(key),)))
    assert _auth(services, key, now=NOW + 29) == Refusal(401, "invalid relay key")  # the cached miss
    assert _auth(services, key, now=NOW + 30).key_id == record["id"]
    assert services.state.unknown_keys == {}


@pytest.mark.parametrize(
    "key",
    [
        "rk-" + "a" * 39,
        "rk-" + "a" * 41,
        "rk_" + "a" * 40,
        "RK-" + "a" * 40,
        "rk-" + "a" * 39 + "=",
        "rk-" + "a" * 39 + "é",
        "sk-ant-api03-xyz",
        "relay",
    ],
)
def test_a_key_not_in_the_form_of_relays_keys_is_refused_without_a_query(key):
    services = Services(transport=RecordingTransport(), db=CountingDatabase())
    assert _auth(services, key) == Refusal(401, "invalid relay key")
    assert services.db.statements == [] and services.state.unknown_keys == {}


def test_every_key_relay_makes_has_the_form_it_checks():
    assert all(key_store.has_key_form(key_store.new_key()) for _ in range(2_000))


def test_past_its_bound_the_record_cache_drops_its_oldest_record():
    services = _services()
    services.state.relay_keys.update((f"h{n}", ({"id": f"rk_{n}"}, NOW)) for n in range(RECORDS_CACHED))
    record, key = _create(services)
    assert _auth(services, key).key_id == record["id"]
    assert len(services.state.relay_keys) == RECORDS_CACHED
    assert "h0" not in services.state.relay_keys and "h1" in services.state.relay_keys


def test_static_keys_from_the_secret_work_without_d1():
    services = Services(transport=RecordingTransport())
    caller = _auth(services, "static-one", env={**ENV, "RELAY_CLIENT_KEYS": "static-zero,static-one"})
    assert isinstance(caller, Caller) and caller.key_id.startswith("static-")
    assert "one" not in caller.key_id


def test_a_model_outside_the_allow_list_is_forbidden_before_the_upstream():
    services = _services()
    _, key = _create(services, allowed_models=["claude-haiku-*"])

    assert _post(services, key, "claude-haiku-4-5").status == 200
    forbidden = _post(services, key, "claude-opus-4-1")
    assert forbidden.status == 403
    assert json.loads(forbidden.body)["error"]["type"] == "permission_error"
    assert len(services.transport.sent) == 1


def test_over_the_rate_limit_is_a_429_before_the_upstream():
    services = _services(limiters={2: CountingLimiter(2), 1000: CountingLimiter(1000)})
    _, key = _create(services, rpm_limit=2)

    statuses = [_post(services, key).status for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert len(services.transport.sent) == 2
    limited = _post(services, key)
    assert 1 <= int(dict(limited.headers)["retry-after"]) <= 60
    assert key not in limited.body.decode()


def test_a_client_sending_both_credentials_is_read_in_its_own_apis_way():
    from relay.http.messages import Headers
    from relay.identity.relay_keys import presented_key

    both = Headers([("x-api-key", "from-x-api-key"), ("authorization", "Bearer from-bearer")])
    assert presented_key(both, "anthropic") == "from-x-api-key"
    assert presented_key(both, "openai") == "from-bearer"
    assert presented_key(Headers([("authorization", "Basic abc")]), "openai") is None
    assert presented_key(Headers([("x-api-key", "  ")]), "anthropic") is None
