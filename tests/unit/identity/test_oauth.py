"""The gateway's OAuth endpoints on CPython with SQLite (the same SQL as D1): the device
grant's states, single use, settings, and bad forms answered in RFC 6749's form."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from urllib.parse import urlencode

import pytest

from relay.config import ConfigError, Settings
from relay.http.errors import Refused
from relay.http.messages import Headers, Request, Response
from relay.identity import access_tokens, managed_settings, people
from relay.identity.gateway_settings import GroupPolicy, parse
from relay.identity.oidc import Identity
from relay.pipeline.app import handle
from relay.providers import model_list
from relay.services import Services
from tests.fakes.platform import CountingLimiter, RecordingTransport, SqliteDatabase
from tests.fakes.streams import read_body

SECRET = "s" * 40
ENV = {
    "RELAY_OIDC_ISSUER": "https://idp.example",
    "RELAY_OIDC_CLIENT_ID": "relay",
    "RELAY_OIDC_CLIENT_SECRET": "cs",
    "RELAY_SESSION_SECRET": SECRET,
}
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def _call(services, method, path, form=None, headers=(), body=None):
    raw = body if body is not None else (urlencode(form).encode() if form is not None else b"")
    fields = Headers([("host", "127.0.0.1:8787"), *headers])
    request = Request(method, path, "", fields, read_body(raw))
    response = asyncio.run(handle(request, ENV, services))
    return response.status, json.loads(response.body) if response.body else None


@pytest.fixture
def services():
    return Services(transport=RecordingTransport(), db=SqliteDatabase())


def test_metadata_points_at_this_origin(services):
    status, metadata = _call(services, "GET", "/.well-known/oauth-authorization-server")
    assert status == 200 and metadata["token_endpoint"] == "http://127.0.0.1:8787/oauth/token"
    assert metadata["grant_types_supported"] == [DEVICE, "refresh_token"]


def test_a_device_code_goes_from_pending_to_one_exchange(services):
    clock = Clock()
    services.clock = clock
    status, device = _call(services, "POST", "/oauth/device_authorization", {"surface": "claude_code"})
    assert status == 200 and len(device["device_code"]) >= 43 and device["interval"] == 5
    assert device["verification_uri_complete"].endswith("/device?user_code=" + device["user_code"])
    poll = {"grant_type": DEVICE, "device_code": device["device_code"]}
    assert _call(services, "POST", "/oauth/token", poll)[1]["error"] == "authorization_pending"
    assert _call(services, "POST", "/oauth/token", poll)[1]["error"] == "slow_down"

    rows = asyncio.run(services.db.all("SELECT * FROM device_grants"))
    assert device["device_code"] not in json.dumps(rows) and device["user_code"] not in json.dumps(rows)
    person = asyncio.run(people.upsert_person(services.db, Identity("iss u", "a@x.example", "A", ("eng",)), clock.now))
    assert asyncio.run(people.settle_grant(services.db, rows[0]["device_hash"], person["id"], None))

    clock.now += 11
    status, tokens = _call(services, "POST", "/oauth/token", poll)
    assert status == 200 and tokens["token_type"] == "Bearer"
    assert access_tokens.verify(SECRET, tokens["access_token"], clock.now).person_id == person["id"]
    assert _call(services, "POST", "/oauth/token", poll) == (
        400,
        {"error": "expired_token", "error_description": "unknown device code (it may have been used already)"},
    )
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    status, renewed = _call(services, "POST", "/oauth/token", refresh)
    assert status == 200 and renewed["refresh_token"] != tokens["refresh_token"]
    assert _call(services, "POST", "/oauth/token", refresh)[0] == 401  # replayed: the session ends
    newer = {"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]}
    assert _call(services, "POST", "/oauth/token", newer)[1]["error_description"].startswith(
        "this session has been revoked"
    )


def test_an_expired_device_code_is_expired_token(services):
    clock = Clock()
    services.clock = clock
    device = _call(services, "POST", "/oauth/device_authorization", {})[1]
    clock.now += 601
    poll = {"grant_type": DEVICE, "device_code": device["device_code"]}
    assert _call(services, "POST", "/oauth/token", poll)[1]["error"] == "expired_token"
    assert _call(services, "POST", "/oauth/token", poll)[1]["error"] == "expired_token"  # gone, as unknown


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"grant_type=" + b"x" * 9000, 413, "invalid_request"),
        (b"grant_type=refresh_token&grant_type=refresh_token", 400, "invalid_request"),
        (b"\xff\xfe", 400, "invalid_request"),
        (b"grant_type=password", 400, "unsupported_grant_type"),
        (b"", 400, "invalid_request"),
        (b"grant_type=refresh_token", 400, "invalid_request"),
        (b"grant_type=refresh_token&refresh_token=nope", 401, "invalid_grant"),
    ],
)
def test_bad_token_requests_get_oauth_errors(services, body, status, error):
    answer = _call(services, "POST", "/oauth/token", body=body)
    assert (answer[0], answer[1]["error"]) == (status, error)


def test_bearer_endpoints_refuse_without_a_token_in_the_anthropic_envelope(services):
    status, body = _call(services, "GET", "/managed/settings")
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    status, body = _call(services, "POST", "/managed/settings")
    assert status == 405 and body["type"] == "error"


def test_sign_in_needs_its_secrets_and_a_long_session_secret():
    with pytest.raises(ConfigError, match="RELAY_OIDC_CLIENT_SECRET"):
        Settings.from_env({**ENV, "RELAY_OIDC_CLIENT_SECRET": ""})
    with pytest.raises(ConfigError, match="at least 32"):
        Settings.from_env({**ENV, "RELAY_SESSION_SECRET": "short"})
    with pytest.raises(ConfigError, match="RELAY_GROUP_POLICIES"):
        Settings.from_env({**ENV, "RELAY_GROUP_POLICIES": '{"groups": {"eng": {"allowed": []}}}'})
    assert Settings.from_env({}).gateway is None


def test_the_first_listed_group_of_a_person_gives_the_policy_else_default():
    gateway = parse(
        {
            **ENV,
            "RELAY_GROUP_POLICIES": json.dumps(
                {"groups": {"eng": {"billing_tag": "e"}, "ops": {"billing_tag": "o"}}, "default": {}}
            ),
        }
    )
    assert gateway.policy_for(("ops", "eng")).group == "eng"
    assert gateway.policy_for(("sales",)).group == "default"
    assert parse(ENV).policy_for(("eng",)) is None
    assert parse({**ENV, "RELAY_SIGNIN_EMAIL_DOMAINS": "example.com"}).may_sign_in("a@other.example", ()) is not None


def test_managed_settings_checksum_is_sha256_of_sorted_compact_json_and_304_on_match():
    policy = GroupPolicy("eng", default_model="claude-sonnet-4-5", settings={"env": {"B": "2", "A": "1"}})
    answer = managed_settings.response(policy, None)
    payload = json.loads(answer.body)
    expected = '{"env":{"A":"1","B":"2"},"model":"claude-sonnet-4-5"}'
    assert payload["checksum"] == "sha256:" + hashlib.sha256(expected.encode()).hexdigest()
    assert dict(answer.headers)["etag"] == f'"{payload["checksum"]}"'
    assert managed_settings.response(policy, f'"{payload["checksum"]}"').status == 304


def test_no_policy_and_no_telemetry_is_404_and_telemetry_alone_is_settings():
    with pytest.raises(Refused) as refused:
        managed_settings.response(None, None)
    assert refused.value.status == 404
    assert managed_settings.settings_of(GroupPolicy("eng", allowed_models=("a",))) is None
    env = managed_settings.settings_of(None, "https://relay.example")["env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://relay.example"
    mine = GroupPolicy("eng", settings={"env": {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}})
    assert managed_settings.settings_of(mine, "https://r")["env"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/json"


def test_a_providers_model_list_is_filtered_to_what_the_person_may_use():
    listing = {"data": [{"id": "claude-sonnet-4-5"}, {"id": "claude-opus-4-1"}], "first_id": "x", "last_id": "y"}
    answer = Response(
        200, [("content-type", "application/json"), ("content-length", "9")], json.dumps(listing).encode()
    )
    out = asyncio.run(
        model_list.filtered("anthropic", answer, lambda m: m.startswith("claude-sonnet"), RecordingTransport())
    )
    assert json.loads(out.body) == {
        "data": [{"id": "claude-sonnet-4-5"}],
        "first_id": "claude-sonnet-4-5",
        "last_id": "claude-sonnet-4-5",
    }
    assert ("content-length", "9") not in out.headers
    error = Response(404, [("content-type", "application/json")], b"{}")
    assert asyncio.run(model_list.filtered("anthropic", error, lambda m: False, RecordingTransport())) is error


def test_device_codes_and_user_code_tries_are_limited_per_ip():
    services = Services(
        transport=RecordingTransport(), db=SqliteDatabase(), limiters={10: CountingLimiter(10), 60: CountingLimiter(60)}
    )
    ip = [("cf-connecting-ip", "203.0.113.9")]
    statuses = [_call(services, "POST", "/oauth/device_authorization", {}, ip)[0] for _ in range(61)]
    assert statuses.count(200) == 60 and statuses[-1] == 429
    assert _call(services, "POST", "/oauth/device_authorization", {}, [("cf-connecting-ip", "203.0.113.10")])[0] == 200


def _page(services, method, path, query="", headers=(), body=b""):
    fields = Headers([("host", "127.0.0.1:8787"), *headers])
    return asyncio.run(handle(Request(method, path, query, fields, read_body(body)), ENV, services))


def test_the_verification_form_needs_its_cookie_and_counts_tries_per_ip():
    services = Services(transport=RecordingTransport(), db=SqliteDatabase(), limiters={10: CountingLimiter(10)})
    shown = _page(services, "GET", "/device", "user_code=BCDF-GHJK")
    cookie = dict(shown.headers)["set-cookie"].split(";")[0]
    assert b'value="BCDF-GHJK"' in shown.body and "HttpOnly" in dict(shown.headers)["set-cookie"]
    csrf = re.search(rb'name=csrf value="([^"]+)"', shown.body).group(1).decode()
    form = urlencode({"csrf": csrf, "user_code": "BCDF-GHJK"}).encode()
    assert _page(services, "POST", "/device", body=form).status == 403  # no cookie: no CSRF match
    other = urlencode({"csrf": "x" * 64, "user_code": "BCDF-GHJK"}).encode()
    assert _page(services, "POST", "/device", headers=[("cookie", cookie)], body=other).status == 403
    tries = [_page(services, "POST", "/device", headers=[("cookie", cookie)], body=form).status for _ in range(11)]
    assert tries == [400] * 10 + [429]


def test_telemetry_without_a_collector_is_accepted_and_dropped(services):
    person = asyncio.run(people.upsert_person(services.db, Identity("iss u", "a@x.example", "A", ()), 1e9))
    session = asyncio.run(people.create_session(services.db, person["id"], "h", None, 1e9, 4e9))
    claims = access_tokens.Claims(person["id"], session, "a@x.example", "A", (), 4_000_000_000)
    bearer = [("authorization", "Bearer " + access_tokens.mint(SECRET, "x", claims, 1e9))]
    status, body = _call(
        services, "POST", "/v1/traces", headers=[*bearer, ("content-type", "application/json")], body=b"{}"
    )
    assert (status, body) == (200, {})
    assert services.transport.sent == []
