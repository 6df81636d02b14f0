"""The admin API, driven through admin.handle with SQLite standing in for D1."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.admin import api
from relay.config import Settings
from relay.http.messages import Headers, Request, Response
from relay.identity import key_store
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import SqliteDatabase
from tests.fakes.streams import read_body

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
TOKEN = "admin-token-for-unit-tests"
CLIENT_KEY = "static-client-key"
SETTINGS = Settings.from_env({"RELAY_ADMIN_TOKEN": TOKEN, "RELAY_CLIENT_KEYS": CLIENT_KEY})
BEARER = (("authorization", f"Bearer {TOKEN}"),)


class NoTransport:
    async def send(self, *args):
        raise AssertionError("the admin API never calls an upstream")

    async def discard(self, body):
        raise AssertionError("the admin API never calls an upstream")


def services(db=True) -> Services:
    return Services(transport=NoTransport(), db=SqliteDatabase() if db else None)


def call(
    svc: Services,
    method: str,
    path: str,
    body: object | None = None,
    *,
    headers=BEARER,
    settings=SETTINGS,
    now=NOW,
    query: str = "",
) -> Response:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()

    request = Request(method, path, query, Headers(headers), read_body(raw, Headers(headers)))
    # Through the front door, which answers the admin API's refusals; `settings` as this
    # isolate's, read once (config.settings_for).
    svc.state.settings, svc.clock = settings, lambda: now
    return asyncio.run(handle(request, {}, svc))


def answer(response: Response):
    assert dict(response.headers)["content-type"] == "application/json"
    return json.loads(response.body)


def message(response: Response) -> str:
    payload = answer(response)
    assert payload["type"] == "error"
    return payload["error"]["message"]


def assert_hidden(secret, *texts):
    """Fails without printing the secret (pytest would show the operands of `in`)."""
    leaked = any(secret in (text if isinstance(text, str) else text.decode()) for text in texts)
    assert not leaked, "secret material in output"


def create(svc, **fields):
    response = call(svc, "POST", "/admin/keys", {"name": "alice", **fields})
    assert response.status == 201, response.body
    return answer(response)


# --- who may use it -------------------------------------------------------------------


def test_unset_admin_token_disables_the_api():
    response = call(services(), "GET", "/admin/keys", settings=Settings.from_env({}))
    assert response.status == 503
    assert message(response) == "admin API disabled: set RELAY_ADMIN_TOKEN"


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("authorization", "Bearer wrong-token"),),
        (("authorization", f"Bearer {TOKEN}x"),),
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", f"Bearer {CLIENT_KEY}"),),  # a static relay key
        (("x-api-key", TOKEN),),  # the token, but not as a bearer token
    ],
)
def test_anything_but_the_admin_bearer_token_gets_401(headers):
    svc = services()
    response = call(svc, "POST", "/admin/keys", {"name": "x"}, headers=headers)
    assert response.status == 401
    assert message(response).startswith(("missing admin token", "invalid admin token"))
    assert_hidden(TOKEN, response.body)
    assert asyncio.run(key_store.list_keys(svc.db)) == []


def test_a_virtual_relay_key_does_not_open_the_admin_api():
    svc = services()
    key = create(svc)["key"]
    assert call(svc, "GET", "/admin/keys", headers=(("authorization", f"Bearer {key}"),)).status == 401


def test_an_admin_token_equal_to_a_client_key_is_refused():
    settings = Settings.from_env({"RELAY_ADMIN_TOKEN": "shared", "RELAY_CLIENT_KEYS": "other,shared"})
    response = call(services(), "GET", "/admin/keys", headers=(("authorization", "Bearer shared"),), settings=settings)
    assert response.status == 503
    assert "must differ" in message(response) and "shared" not in message(response)


def test_no_d1_binding_is_a_clear_503():
    response = call(services(db=False), "GET", "/admin/keys")
    assert response.status == 503
    assert "D1" in message(response)


# --- routes ---------------------------------------------------------------------------


def test_create_answers_201_with_the_key_once():
    svc = services()
    created = create(
        svc,
        billing_tag="team-a",
        allowed_models=["claude-haiku-*"],
        rpm_limit=60,
        max_concurrent_streams=2,
        monthly_budget_usd=12.5,
        cache_policy="off",
        expires_at="2027-02-01T00:00:00+01:00",
    )

    key = created.pop("key")
    shaped = key.startswith("rk-") and len(key) == 43
    assert shaped
    assert created == {
        "id": created["id"],
        "name": "alice",
        "billing_tag": "team-a",
        "allowed_models": ["claude-haiku-*"],
        "rpm_limit": 60,
        "max_concurrent_streams": 2,
        "monthly_budget_usd": 12.5,
        "cache_policy": "off",
        "created_at": "2027-01-15T08:00:00Z",
        "expires_at": "2027-01-31T23:00:00Z",
        "revoked_at": None,
    }
    assert asyncio.run(key_store.find_by_hash(svc.db, key_store.key_hash(key)))["id"] == created["id"]


def test_list_and_show_never_carry_key_material():
    svc = services()
    first, second = create(svc, name="first"), create(svc, name="second")

    listed = call(svc, "GET", "/admin/keys")
    assert listed.status == 200
    data = answer(listed)["data"]
    assert [record["id"] for record in data] == [first["id"], second["id"]]
    shown = call(svc, "GET", f"/admin/keys/{first['id']}")
    assert shown.status == 200
    assert answer(shown) == {name: value for name, value in first.items() if name != "key"}
    for body in (listed.body, shown.body):
        for made in (first, second):
            assert_hidden(made["key"], body)
            assert_hidden(key_store.key_hash(made["key"]), body)
        assert b"key_hash" not in body and b'"key"' not in body


@pytest.mark.parametrize("method, suffix", [("POST", "/revoke"), ("DELETE", "")])
def test_revoke_is_idempotent(method, suffix):
    svc = services()
    created = create(svc)

    first = call(svc, method, f"/admin/keys/{created['id']}{suffix}", now=NOW + 5)
    again = call(svc, method, f"/admin/keys/{created['id']}{suffix}", now=NOW + 50)

    assert first.status == again.status == 200
    assert answer(first)["revoked_at"] == answer(again)["revoked_at"] == "2027-01-15T08:00:05Z"
    assert answer(call(svc, "GET", f"/admin/keys/{created['id']}"))["revoked_at"] == "2027-01-15T08:00:05Z"


def test_patch_sets_and_resets_the_cache_policy_and_drops_cached_lookups():
    svc = services()
    created = create(svc)
    hashed = key_store.key_hash(created["key"])
    svc.state.relay_keys[hashed] = ({"id": created["id"]}, NOW)

    changed = call(svc, "PATCH", f"/admin/keys/{created['id']}", {"cache_policy": "auto-1h"})
    assert changed.status == 200 and answer(changed)["cache_policy"] == "auto-1h"
    assert hashed not in svc.state.relay_keys
    assert answer(call(svc, "GET", f"/admin/keys/{created['id']}"))["cache_policy"] == "auto-1h"
    reset = call(svc, "PATCH", f"/admin/keys/{created['id']}", {"cache_policy": None})
    assert answer(reset)["cache_policy"] is None


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"cache_policy": "always"}, "cache_policy must be one of off, system, auto, system-1h, auto-1h"),
        ({"cache_policy": "off", "name": "x"}, "only the cache policy of a key can change"),
        ({}, "only the cache policy of a key can change"),
    ],
)
def test_patch_refuses_anything_but_a_known_policy(body, problem):
    svc = services()
    created = create(svc)
    response = call(svc, "PATCH", f"/admin/keys/{created['id']}", body)
    assert response.status == 400 and problem in message(response)
    assert answer(call(svc, "GET", f"/admin/keys/{created['id']}"))["cache_policy"] is None


def test_patch_of_an_unknown_key_is_404():
    assert call(services(), "PATCH", "/admin/keys/rk_00000000", {"cache_policy": "off"}).status == 404


def test_create_refuses_an_unknown_cache_policy():
    response = call(services(), "POST", "/admin/keys", {"name": "a", "cache_policy": "everything"})
    assert response.status == 400 and "cache_policy must be one of" in message(response)


def test_revoking_drops_this_isolates_cached_lookup():
    svc = services()
    created = create(svc)
    hashed = key_store.key_hash(created["key"])
    svc.state.relay_keys[hashed] = ({"id": created["id"]}, NOW)
    svc.state.relay_keys["other"] = ({"id": "rk_ffffffff"}, NOW)
    svc.state.unknown_keys["unknown"] = NOW

    call(svc, "POST", f"/admin/keys/{created['id']}/revoke")
    assert set(svc.state.relay_keys) == {"other"} and set(svc.state.unknown_keys) == {"unknown"}


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/admin/keys/rk_00000000"),
        ("POST", "/admin/keys/rk_00000000/revoke"),
        ("DELETE", "/admin/keys/rk_00000000"),
    ],
)
def test_unknown_ids_get_404(method, path):
    response = call(services(), method, path)
    assert response.status == 404
    assert message(response) == "no relay key with id rk_00000000"


def test_a_key_pasted_as_an_id_is_not_echoed():
    svc = services()
    key = create(svc)["key"]
    for method, path in (
        ("GET", f"/admin/keys/{key}"),
        ("POST", f"/admin/keys/{key}/revoke"),
        ("GET", f"/admin/{key}"),
    ):
        response = call(svc, method, path)
        assert response.status == 404
        assert_hidden(key[:10], response.body)


@pytest.mark.parametrize(
    "path",
    ["/admin/ui.html", "/admin/users", "/admin/keys/rk_00000000/enable", "/admin/keys//revoke", "/admin/keys/a/b/c"],
)
def test_unknown_admin_paths_get_404(path):
    assert call(services(), "GET", path).status == 404


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("PUT", "/admin/keys", "GET, POST"),
        ("DELETE", "/admin/keys", "GET, POST"),
        ("POST", "/admin/keys/rk_00000000", "GET, PATCH, DELETE"),
        ("GET", "/admin/keys/rk_00000000/revoke", "POST"),
    ],
)
def test_wrong_methods_get_405_with_allow(method, path, allowed):
    response = call(services(), method, path)
    assert response.status == 405
    assert dict(response.headers)["allow"] == allowed


def test_a_trailing_slash_is_the_same_route():
    svc = services()
    create(svc)
    assert len(answer(call(svc, "GET", "/admin/keys/"))["data"]) == 1


def test_every_answer_is_json_and_not_cached():
    svc = services()
    created = create(svc)
    for response in (
        call(svc, "GET", "/admin/keys"),
        call(svc, "GET", f"/admin/keys/{created['id']}"),
        call(svc, "GET", "/admin/nothing"),
        call(svc, "GET", "/admin/keys", headers=()),
    ):
        headers = dict(response.headers)
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "no-store"
        json.loads(response.body)


# --- create bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", "request body is not valid JSON (UTF-8)"),
        (b"", "request body is not valid JSON (UTF-8)"),
        (b"\xff\xfe", "request body is not valid JSON (UTF-8)"),
        ([], "request body must be a JSON object"),
        ({}, "name is required"),
        ({"name": None}, "name is required"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": "   "}, "name must be a non-empty string"),
        ({"name": 7}, "name must be a non-empty string"),
        ({"name": "x" * 257}, "name must be at most 256 characters"),
        ({"name": "a", "billing_tag": 3}, "billing_tag must be a non-empty string"),
        ({"name": "a", "allowed_models": "claude-*"}, "allowed_models must be a list"),
        ({"name": "a", "allowed_models": ["claude-*", 4]}, "allowed_models must be a list"),
        ({"name": "a", "allowed_models": [""]}, "allowed_models must be a list"),
        ({"name": "a", "rpm_limit": 0}, "rpm_limit must be a positive whole number"),
        ({"name": "a", "rpm_limit": -5}, "rpm_limit must be a positive whole number"),
        ({"name": "a", "rpm_limit": 1.5}, "rpm_limit must be a positive whole number"),
        ({"name": "a", "rpm_limit": "60"}, "rpm_limit must be a positive whole number"),
        ({"name": "a", "rpm_limit": True}, "rpm_limit must be a positive whole number"),
        ({"name": "a", "rpm_limit": 1}, "rpm_limit must be at least 10 (requests per minute)"),
        ({"name": "a", "rpm_limit": 9}, "rpm_limit must be at least 10 (requests per minute)"),
        ({"name": "a", "max_concurrent_streams": 0}, "max_concurrent_streams must be a positive whole number"),
        ({"name": "a", "monthly_budget_usd": -0.01}, "monthly_budget_usd must be a non-negative number"),
        ({"name": "a", "monthly_budget_usd": "10"}, "monthly_budget_usd must be a non-negative number"),
        (b'{"name": "a", "monthly_budget_usd": NaN}', "monthly_budget_usd must be a non-negative number"),
        (b'{"name": "a", "monthly_budget_usd": Infinity}', "monthly_budget_usd must be a non-negative number"),
        ({"name": "a", "expires_at": "next week"}, "expires_at must be an ISO 8601 time"),
        ({"name": "a", "expires_at": 1900000000}, "expires_at must be an ISO 8601 time"),
        ({"name": "a", "expires_at": "9999-12-31T23:59:59-05:00"}, "expires_at must be an ISO 8601 time"),
        ({"name": "a", "expires_at": "2027-01-15T07:59:59Z"}, "expires_at must be in the future"),
        ({"name": "a", "key": "rk-chosen", "key_hash": "00", "id": "rk_12345678"}, "unknown fields: id, key, key_hash"),
    ],
)
def test_bad_create_bodies_get_400_and_store_nothing(body, expected):
    svc = services()
    response = call(svc, "POST", "/admin/keys", body)
    assert response.status == 400
    assert message(response).startswith(expected)
    assert asyncio.run(key_store.list_keys(svc.db)) == []


def test_every_problem_is_named_at_once():
    response = call(services(), "POST", "/admin/keys", {"rpm_limit": 0, "colour": "red"})
    assert message(response) == ("unknown fields: colour; name is required; rpm_limit must be a positive whole number")


def test_nulls_mean_not_set():
    created = create(
        services(),
        billing_tag=None,
        allowed_models=None,
        rpm_limit=None,
        max_concurrent_streams=None,
        monthly_budget_usd=None,
        expires_at=None,
    )
    assert created["allowed_models"] == [] and created["rpm_limit"] is None and created["expires_at"] is None


def test_the_lowest_rate_limit_tier_is_the_lowest_rpm_limit():
    assert create(services(), rpm_limit=10)["rpm_limit"] == 10


def test_a_zero_budget_is_allowed():
    assert create(services(), monthly_budget_usd=0)["monthly_budget_usd"] == 0.0


def test_an_oversized_body_gets_413():
    svc = services()
    response = call(svc, "POST", "/admin/keys", {"name": "a" * (api.MAX_BODY_BYTES + 1)})
    assert response.status == 413
    declared = call(
        svc, "POST", "/admin/keys", {"name": "a"}, headers=(*BEARER, ("content-length", str(api.MAX_BODY_BYTES + 1)))
    )
    assert declared.status == 413


def test_logs_name_keys_by_id_only(capsys):
    svc = services()
    created = create(svc)
    call(svc, "POST", f"/admin/keys/{created['id']}/revoke")
    log = capsys.readouterr().out
    assert created["id"] in log and "created" in log and "revoked" in log
    assert_hidden(created["key"][:10], log)
    assert_hidden(TOKEN, log)


# --- spend caps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"owner_kind": "team", "owner_id": "ann", "period": "day", "limit_usd": 1}, "owner_kind must be one of"),
        ({"owner_kind": "key", "period": "day", "limit_usd": 1}, "owner_id must be a non-empty string"),
        ({"owner_kind": "relay", "owner_id": "x", "period": "day", "limit_usd": 1}, "has no owner_id"),
        ({"owner_kind": "tag", "owner_id": "t", "period": "hour", "limit_usd": 1}, "period must be one of"),
        ({"owner_kind": "tag", "owner_id": "t", "period": "day", "limit_usd": -1}, "non-negative number"),
        ({"owner_kind": "tag", "owner_id": "t", "period": "day"}, "limit_usd is required"),
        ({"owner_kind": "tag", "owner_id": "t", "period": "day", "limit_usd": 1, "x": 1}, "unknown fields: x"),
    ],
)
def test_a_cap_is_refused_with_every_problem_named(body, problem):
    response = call(services(), "POST", "/admin/caps", body)
    assert response.status == 400 and problem in message(response)


def test_setting_a_cap_again_changes_its_limit_and_this_isolate_forgets_its_cached_caps():
    svc = services()
    svc.state.spend_caps = (NOW, [])
    first = answer(
        call(svc, "POST", "/admin/caps", {"owner_kind": "tag", "owner_id": "t", "period": "week", "limit_usd": 3})
    )
    assert svc.state.spend_caps is None
    again = answer(
        call(svc, "POST", "/admin/caps", {"owner_kind": "tag", "owner_id": "t", "period": "week", "limit_usd": 4})
    )
    assert again["id"] == first["id"] and again["limit_usd"] == 4.0
    assert [cap["id"] for cap in answer(call(svc, "GET", "/admin/caps"))["data"]] == [first["id"]]
    assert call(svc, "DELETE", f"/admin/caps/{first['id']}").status == 200
    assert call(svc, "DELETE", f"/admin/caps/{first['id']}").status == 404
    assert answer(call(svc, "GET", "/admin/caps"))["data"] == []
