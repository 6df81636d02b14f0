"""The admin API and the key CLI against the real Worker on workerd, with local D1.

Created keys are random; assertions about them go through `assert_hidden`, so that a
failure never prints key material.
"""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from tests.clients import relay_cli

from .conftest import ADMIN_TOKEN, CLIENT_KEY

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def assert_hidden(secret: str, *texts: str) -> None:
    leaked = any(secret in text for text in texts)
    assert not leaked, "key material where it must not be"


@pytest.fixture
def admin(relay):
    with httpx.Client(base_url=relay.url, headers=ADMIN, timeout=30) as client:
        yield client


def d1_rows(relay) -> str:
    """Everything in the Worker's local relay_keys table, as wrangler prints it."""
    return relay.d1_output("SELECT * FROM relay_keys")


def test_create_list_show_revoke(relay, admin):
    created = admin.post(
        "/admin/keys",
        json={
            "name": "e2e admin",
            "billing_tag": "team-e2e",
            "allowed_models": ["claude-haiku-*"],
            "rpm_limit": 30,
            "max_concurrent_streams": 3,
            "monthly_budget_usd": 20,
            "expires_at": "2099-01-01T00:00:00Z",
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == "application/json"
    record = created.json()
    key = record.pop("key")
    shaped = key.startswith("rk-") and len(key) == 43
    assert shaped
    assert record["name"] == "e2e admin" and record["allowed_models"] == ["claude-haiku-*"]
    assert (record["rpm_limit"], record["max_concurrent_streams"], record["monthly_budget_usd"]) == (30, 3, 20.0)
    assert record["expires_at"] == "2099-01-01T00:00:00Z" and record["revoked_at"] is None

    listed = admin.get("/admin/keys")
    assert listed.status_code == 200 and record in listed.json()["data"]
    shown = admin.get(f"/admin/keys/{record['id']}")
    assert shown.status_code == 200 and shown.json() == record

    revoked = admin.post(f"/admin/keys/{record['id']}/revoke")
    assert revoked.status_code == 200
    first_revocation = revoked.json()["revoked_at"]
    assert first_revocation is not None
    again = admin.delete(f"/admin/keys/{record['id']}")
    assert again.status_code == 200 and again.json()["revoked_at"] == first_revocation

    for answer in (listed, shown, revoked, again):
        assert_hidden(key, answer.text)
        assert "key_hash" not in answer.text
    assert_hidden(key, relay.log())


def test_bad_requests(admin):
    bad = admin.post("/admin/keys", json={"name": "x", "rpm_limit": 0, "secret": 1})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == ("unknown fields: secret; rpm_limit must be a positive whole number")
    assert admin.post("/admin/keys", content=b"{nope", headers={"content-type": "application/json"}).status_code == 400
    assert admin.get("/admin/keys/rk_00000000").status_code == 404
    assert admin.get("/admin/users").status_code == 404
    wrong = admin.put("/admin/keys", json={})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-admin-token", f"Bearer {CLIENT_KEY}", f"Bearer {ADMIN_TOKEN}-and-more"],
    ids=["none", "a-wrong-token", "a-relay-key", "the-admin-token-and-more"],
)  # ids name no key
def test_only_the_admin_token_opens_the_admin_api(relay, authorization):
    headers = {"authorization": authorization} if authorization else {}
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin/keys/rk_00000000")):
        answer = httpx.request(method, relay.url + path, headers=headers, json={"name": "intruder"})
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "authentication_error"


def test_a_virtual_key_does_not_open_the_admin_api_and_the_admin_token_is_no_relay_key(
    relay, admin, anthropic_upstream, tag
):
    key = admin.post("/admin/keys", json={"name": "not an admin"}).json()["key"]
    assert httpx.get(relay.url + "/admin/keys", headers={"authorization": f"Bearer {key}"}).status_code == 401

    body = {"model": "claude-haiku-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-api-key": ADMIN_TOKEN}, {"authorization": f"Bearer {ADMIN_TOKEN}"}):
        answer = httpx.post(
            relay.url + "/v1/messages",
            json=body,
            headers={**headers, "anthropic-version": "2023-06-01", "x-test-tag": tag},
        )
        assert answer.status_code == 401
    assert anthropic_upstream.requests(tag) == []


def test_an_rpm_limit_below_the_lowest_rate_limit_tier_is_refused(relay, admin, anthropic_upstream, tag):
    """Below the lowest tier (10 a minute) no limiter fits, and the key could never be used."""
    for rpm in (1, 9):
        refused = admin.post("/admin/keys", json={"name": "too slow", "rpm_limit": rpm})
        assert refused.status_code == 400  # (not its text: a key, if one was made)
        assert "rpm_limit must be at least 10" in refused.json()["error"]["message"]
    by_cli = relay_cli(
        "keys", "create", "--name", "too slow", "--rpm", "5", "--url", relay.url, "--admin-token", ADMIN_TOKEN
    )
    assert by_cli.returncode != 0 and "rpm_limit must be at least 10" in by_cli.stderr
    assert "too slow" not in admin.get("/admin/keys").text

    lowest = admin.post("/admin/keys", json={"name": "slowest", "rpm_limit": 10}).json()
    answer = httpx.post(
        relay.url + "/v1/messages",
        headers={"x-api-key": lowest["key"], "x-test-tag": tag, "anthropic-version": "2023-06-01"},
        json={"model": "claude-haiku-4-5", "max_tokens": 1, "messages": []},
    )
    assert answer.status_code == 200 and len(anthropic_upstream.requests(tag)) == 1


def test_the_cli_creates_lists_and_revokes_and_d1_holds_only_the_hash(relay):
    created = relay_cli(
        "keys",
        "create",
        "--name",
        "cli e2e",
        "--tag",
        "team-cli",
        "--models",
        "claude-haiku-*",
        "gpt-4o-mini",
        "--rpm",
        "60",
        "--expires",
        "2099-06-30T12:00:00Z",
        "--url",
        relay.url,
        "--admin-token",
        ADMIN_TOKEN,
    )
    assert created.returncode == 0, created.stderr
    assert "store this key now" in created.stderr
    record = json.loads(created.stdout)
    key = record.pop("key")
    assert record["name"] == "cli e2e" and record["allowed_models"] == ["claude-haiku-*", "gpt-4o-mini"]
    assert record["expires_at"] == "2099-06-30T12:00:00Z"

    # Token from the environment this time, as the README recommends.
    listed = relay_cli("keys", "list", "--url", relay.url, env={"RELAY_ADMIN_TOKEN": ADMIN_TOKEN})
    assert listed.returncode == 0, listed.stderr
    assert record in json.loads(listed.stdout)["data"]
    shown = relay_cli("keys", "show", record["id"], env={"RELAY_URL": relay.url, "RELAY_ADMIN_TOKEN": ADMIN_TOKEN})
    assert shown.returncode == 0 and json.loads(shown.stdout) == record

    rows = d1_rows(relay)
    stored = [row for result in json.loads(rows) for row in result["results"] if row["id"] == record["id"]]
    assert len(stored) == 1
    hashed = stored[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert hashed
    assert_hidden(key, rows)
    assert_hidden(key[3:], rows)  # not even the random part

    revoked = relay_cli("keys", "revoke", record["id"], "--url", relay.url, "--admin-token", ADMIN_TOKEN)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"] is not None

    for run in (created, listed, shown, revoked):
        assert_hidden(ADMIN_TOKEN, run.stdout, run.stderr)
    for run in (listed, shown, revoked):
        assert_hidden(key, run.stdout, run.stderr)
    assert_hidden(key, relay.log())


def test_the_cli_reports_a_wrong_token_and_exits_1(relay):
    refused = relay_cli("keys", "list", "--url", relay.url, "--admin-token", "wrong-admin-token")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == "relay: HTTP 401: invalid admin token\n"
