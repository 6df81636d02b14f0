"""Sign-in instead of keys, on workerd: relay speaks Claude Code's gateway protocol (device
flow, refresh, revocation, managed settings, telemetry) with a fake OpenID Connect IdP.

This test plays Claude Code's side of the protocol with httpx (as Claude Code 2.1.331 sends
it: `surface=claude_code`, no client_id) and the person's browser (cookies, redirects,
the IdP's login form); the anthropic SDK then uses the access token.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time

import anthropic
import httpx
import pytest

from devtools.fake_collector import FakeCollector
from devtools.fake_oidc import FakeIdp
from devtools.fake_upstream import REPLY_TEXT
from devtools.local_worker import LocalWorker
from relay.identity.managed_settings import telemetry_env
from tests import sign_in_browser

from .conftest import ADMIN_TOKEN, ANTHROPIC_UPSTREAM_KEY, ISSUED, audit_rows

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
IDP_SECRET = "relay-test-oidc-client-secret-0001"
SESSION_SECRET = "relay-test-session-secret-0001-abcdefghijklmnop"
CACHE_SECONDS = 2
POLICIES = {
    "groups": {
        "engineering": {
            "allowed_models": ["claude-sonnet-*", "claude-haiku-*"],
            "default_model": "claude-sonnet-4-5",
            "billing_tag": "eng",
            "settings": {"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}},
        },
        "sales": {"allowed_models": ["claude-opus-*", "claude-haiku-*"]},
    }
}
ISSUED.extend([IDP_SECRET, SESSION_SECRET])


@pytest.fixture(scope="module")
def idp():
    with FakeIdp(IDP_SECRET) as fake:
        fake.add_user("alice", "alice@example.com", ["engineering"])
        fake.add_user("bob", "bob@example.com", ["sales"])
        fake.add_user("carol", "carol@example.com", ["engineering"])
        yield fake
        ISSUED.extend(fake.issued)  # the IdP's tokens: never in relay's answers, logs or D1


@pytest.fixture(scope="module")
def collector():
    with FakeCollector() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(idp, collector, anthropic_upstream):
    worker = LocalWorker(
        {
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_KEY_CACHE_SECONDS": str(CACHE_SECONDS),
            "RELAY_OIDC_ISSUER": idp.issuer,
            "RELAY_OIDC_CLIENT_ID": idp.client_id,
            "RELAY_OIDC_CLIENT_SECRET": IDP_SECRET,
            "RELAY_SESSION_SECRET": SESSION_SECRET,
            "RELAY_SIGNIN_EMAIL_DOMAINS": "example.com",
            "RELAY_GROUP_POLICIES": json.dumps(POLICIES),
            "RELAY_TELEMETRY_COLLECTORS": collector.url,
        }
    ).start()
    yield worker
    worker.stop()


def _claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _poll(gateway, device_code: str) -> httpx.Response:
    return httpx.post(
        gateway.url + "/oauth/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code},
        headers={"user-agent": "claude-code/2.1.331"},
    )


def _start(gateway) -> tuple[dict, dict]:
    metadata = httpx.get(gateway.url + "/.well-known/oauth-authorization-server").json()
    device = httpx.post(
        metadata["device_authorization_endpoint"],
        data={"surface": "claude_code"},
        headers={"user-agent": "claude-code/2.1.331"},
    )
    assert device.status_code == 200, device.text
    return metadata, device.json()


def _browser_signs_in(gateway, idp, device: dict, user: str) -> httpx.Response:
    """The person opens the verification link, confirms the code and signs in at the IdP."""
    return sign_in_browser.sign_in(device["verification_uri"], device["user_code"], idp, user)


def sign_in(gateway, idp, user: str) -> dict:
    _, device = _start(gateway)
    first = _poll(gateway, device["device_code"])
    assert (first.status_code, first.json()["error"]) == (400, "authorization_pending")
    started = time.monotonic()
    done = _browser_signs_in(gateway, idp, device, user)
    assert done.status_code == 200 and "Signed in as" in done.text, done.text
    time.sleep(max(0.0, device["interval"] - (time.monotonic() - started)) + 0.2)
    tokens = _poll(gateway, device["device_code"])
    assert tokens.status_code == 200, tokens.text
    return tokens.json()


def _client(gateway, token: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, auth_token=token, max_retries=0)


def _ask(client, model="claude-sonnet-4-5", session=None):
    headers = {"x-claude-code-session-id": session} if session else {}
    return client.messages.create(
        model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}], extra_headers=headers
    )


def test_metadata_names_same_origin_endpoints(gateway):
    metadata = httpx.get(gateway.url + "/.well-known/oauth-authorization-server").json()
    assert metadata["device_authorization_endpoint"] == gateway.url + "/oauth/device_authorization"
    assert metadata["token_endpoint"] == gateway.url + "/oauth/token"
    assert metadata["revocation_endpoint"] == gateway.url + "/oauth/revoke"
    assert "authorization_endpoint" not in metadata
    assert metadata["token_endpoint_auth_methods_supported"] == ["none"]
    assert metadata["gateway_protocol_version"] == 1


def test_a_person_signs_in_and_their_requests_name_them(gateway, idp):
    tokens = sign_in(gateway, idp, "alice")
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert tokens["email"] == "alice@example.com"  # Claude Code asks the person to confirm it
    claims = _claims(tokens["access_token"])
    assert "claude-gateway" in claims["aud"] and claims["email"] == "alice@example.com"
    assert abs(claims["exp"] - time.time() - 3600) < 120

    session = secrets.token_hex(8)
    assert _ask(_client(gateway, tokens["access_token"]), session=session).content[0].text == REPLY_TEXT
    [row] = audit_rows(gateway, f"session_id = '{session}'", 1)
    assert (row["person_id"], row["person_email"], row["group_name"]) == (
        claims["sub"],
        "alice@example.com",
        "engineering",
    )
    assert row["billing_tag"] == "eng" and row["status"] == 200
    report = httpx.get(
        gateway.url + "/admin/usage",
        params={"group_by": "group,person"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    assert any(g["group"] == "engineering" and g["person"] == "alice@example.com" for g in report["groups"])


def test_a_device_code_is_single_use_and_polling_too_fast_slows_down(gateway, idp):
    _, device = _start(gateway)
    assert _poll(gateway, device["device_code"]).json()["error"] == "authorization_pending"
    assert _poll(gateway, device["device_code"]).json()["error"] == "slow_down"
    assert _browser_signs_in(gateway, idp, device, "alice").status_code == 200
    time.sleep(10.5)  # the interval, grown by slow_down
    assert _poll(gateway, device["device_code"]).status_code == 200
    again = _poll(gateway, device["device_code"])
    assert (again.status_code, again.json()["error"]) == (400, "expired_token")
    unknown = _poll(gateway, "not-a-device-code")
    assert (unknown.status_code, unknown.json()["error"]) == (400, "expired_token")


def test_refresh_rotates_and_a_used_refresh_token_is_refused(gateway, idp):
    tokens = sign_in(gateway, idp, "alice")
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = httpx.post(gateway.url + "/oauth/token", data=form)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["refresh_token"] != tokens["refresh_token"]
    assert _ask(_client(gateway, renewed.json()["access_token"])).content[0].text == REPLY_TEXT
    replayed = httpx.post(gateway.url + "/oauth/token", data=form)
    assert (replayed.status_code, replayed.json()["error"]) == (401, "invalid_grant")
    # The replay of a rotated token ends the session: the newer refresh token and the access
    # token stop working too.
    newer = {"grant_type": "refresh_token", "refresh_token": renewed.json()["refresh_token"]}
    assert httpx.post(gateway.url + "/oauth/token", data=newer).status_code == 401
    time.sleep(CACHE_SECONDS + 0.5)
    with pytest.raises(anthropic.AuthenticationError):
        _ask(_client(gateway, renewed.json()["access_token"]))


def test_a_person_removed_at_the_idp_gets_invalid_grant_at_the_next_refresh(gateway, idp):
    tokens = sign_in(gateway, idp, "carol")
    idp.remove_user("carol")
    refused = httpx.post(
        gateway.url + "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_grant")
    assert refused.headers["x-should-retry"] == "false"
    # Ending the session at the refresh also ends the access token it had.
    with pytest.raises(anthropic.AuthenticationError):
        _ask(_client(gateway, tokens["access_token"]))


def test_an_admin_revokes_a_persons_sessions_at_once(gateway, idp):
    tokens = sign_in(gateway, idp, "alice")
    client = _client(gateway, tokens["access_token"])
    assert _ask(client).content[0].text == REPLY_TEXT
    person = _claims(tokens["access_token"])["sub"]
    listed = httpx.get(gateway.url + "/admin/people", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert any(p["id"] == person and p["email"] == "alice@example.com" for p in listed["data"])
    revoked = httpx.post(
        f"{gateway.url}/admin/people/{person}/revoke", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_sessions"]
    time.sleep(CACHE_SECONDS + 0.5)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        _ask(client)
    assert caught.value.response.headers["x-should-retry"] == "false"
    refresh = httpx.post(
        gateway.url + "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert (refresh.status_code, refresh.json()["error"]) == (401, "invalid_grant")


def test_the_client_revokes_its_session_on_logout(gateway, idp):
    tokens = sign_in(gateway, idp, "alice")
    for form in (
        {"token": tokens["access_token"]},
        {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"},
    ):
        assert httpx.post(gateway.url + "/oauth/revoke", data=form).status_code == 200
    time.sleep(CACHE_SECONDS + 0.5)
    with pytest.raises(anthropic.AuthenticationError):
        _ask(_client(gateway, tokens["access_token"]))


def test_group_policy_models_and_managed_settings(gateway, idp, anthropic_upstream):
    alice = _client(gateway, sign_in(gateway, idp, "alice")["access_token"])
    with pytest.raises(anthropic.BadRequestError) as caught:
        _ask(alice, model="claude-opus-4-1")
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "claude-opus-4-1" in caught.value.body["error"]["message"]

    token = alice.auth_token
    settings = httpx.get(gateway.url + "/managed/settings", headers={"authorization": f"Bearer {token}"})
    assert settings.status_code == 200, settings.text
    payload = settings.json()
    assert payload["settings"] == {
        "env": {**telemetry_env(gateway.url), "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"},
        "model": "claude-sonnet-4-5",
    }
    assert payload["checksum"].startswith("sha256:") and settings.headers["etag"] == f'"{payload["checksum"]}"'
    unchanged = httpx.get(
        gateway.url + "/managed/settings",
        headers={"authorization": f"Bearer {token}", "if-none-match": settings.headers["etag"]},
    )
    assert unchanged.status_code == 304

    # bob's group pushes no settings: his only send telemetry to relay (it relays some).
    bob = sign_in(gateway, idp, "bob")["access_token"]
    bobs = httpx.get(gateway.url + "/managed/settings", headers={"authorization": f"Bearer {bob}"})
    assert bobs.json()["settings"] == {"env": telemetry_env(gateway.url)}
    assert _ask(_client(gateway, bob), model="claude-opus-4-1").content[0].text == REPLY_TEXT


def test_the_model_list_names_only_the_models_the_persons_group_allows(gateway, idp):
    # The provider lists claude-sonnet-4-5: engineering may use it, sales may not.
    for user, expected in (("alice", ["claude-sonnet-4-5"]), ("bob", [])):
        listed = _client(gateway, sign_in(gateway, idp, user)["access_token"]).models.list()
        assert [model.id for model in listed.data] == expected
        assert listed.first_id == (expected[0] if expected else None)


def test_telemetry_reaches_the_collector_byte_identical(gateway, idp, collector):
    token = sign_in(gateway, idp, "alice")["access_token"]
    body = secrets.token_bytes(300)  # an OTLP protobuf body is opaque to relay
    answer = httpx.post(
        gateway.url + "/v1/metrics",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-protobuf"},
    )
    assert answer.status_code == 200
    deadline = time.monotonic() + 20
    while not [r for r in collector.received if r.body == body] and time.monotonic() < deadline:
        time.sleep(0.2)
    [received] = [r for r in collector.received if r.body == body]
    assert received.path == "/v1/metrics" and received.headers["content-type"] == "application/x-protobuf"
    assert "authorization" not in received.headers

    anonymous = httpx.post(gateway.url + "/v1/logs", content=b"{}", headers={"content-type": "application/json"})
    assert anonymous.status_code == 401

    # A collector that fails costs the client nothing, and is counted.
    collector.status = 503
    try:
        failing = httpx.post(
            gateway.url + "/v1/logs",
            content=b"{}",
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )
        assert (failing.status_code, failing.json()) == (200, {})
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        deadline = time.monotonic() + 20
        while httpx.get(gateway.url + "/admin/status", headers=admin).json()["telemetry_failures"] < 1:
            assert time.monotonic() < deadline, "the collector's failure was not counted"
            time.sleep(0.3)
    finally:
        collector.status = 200


def test_bad_input_gets_oauth_or_anthropic_errors_never_a_500(gateway, idp):
    url = gateway.url
    forged_none = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in (
                {"alg": "none"},
                {"sub": "p_00000000", "sid": "s_0", "aud": ["claude-gateway", "relay"], "exp": 2**40},
            )
        )
        + ".x"
    )
    for token in (forged_none, "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"):
        answer = httpx.post(url + "/v1/messages", json={"model": "m"}, headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and answer.json()["error"]["type"] == "authentication_error"
        assert answer.headers["x-should-retry"] == "false"
    huge = httpx.post(
        url + "/oauth/token",
        content=b"a=" + b"x" * 20000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (huge.status_code, huge.json()["error"]) == (413, "invalid_request")
    twice = httpx.post(url + "/oauth/token", content=b"grant_type=refresh_token&grant_type=x")
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")
    assert httpx.post(url + "/oauth/token", data={"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    assert httpx.get(url + "/oauth/token").status_code == 405
    no_csrf = httpx.post(url + "/device", data={"user_code": "BCDF-GHJK"})
    assert no_csrf.status_code == 403
    stale = httpx.get(url + "/oauth/callback", params={"state": "nope", "code": "x"})
    assert stale.status_code == 400 and "text/html" in stale.headers["content-type"]
    with httpx.Client() as browser:
        page = browser.get(url + "/device")
        csrf = re.search(r'name=csrf value="([^"]+)"', page.text).group(1)
        wrong = browser.post(url + "/device", data={"csrf": csrf, "user_code": "BCDF-GHJK"})
        assert wrong.status_code == 400 and "unknown or has expired" in wrong.text
