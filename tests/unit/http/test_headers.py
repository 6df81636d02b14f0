"""Which header fields cross relay, in each direction (headers.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.headers import bearer_token, client_response_headers, upstream_request_headers
from relay.http.messages import Headers, Request
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import RecordingTransport
from tests.fakes.streams import read_body

# As the SDKs and Claude Code send them: every one passes byte for byte, in order.
PASSED = [
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"),
    ("x-stainless-lang", "js"),
    ("x-stainless-retry-count", "0"),
    ("user-agent", "claude-cli/2.1.3 (external, cli)"),
    ("x-claude-code-session-id", "0b6f7c1e-session"),
    ("x-custom-thing", "spaced  value "),
    ("x-custom-thing", "a second one"),
    ("content-type", "application/json"),
    ("accept", "text/event-stream"),
    ("openai-beta", "assistants=v2"),
    ("x-forwarded", "not a forwarding field: x-forwarded-* is"),
]

NOT_PASSED = [
    ("host", "relay.example"),
    ("authorization", "Bearer relay-key"),
    ("x-api-key", "relay-key"),
    ("connection", "keep-alive, x-hop"),
    ("x-hop", "named by connection"),
    ("keep-alive", "timeout=5"),
    ("te", "trailers"),
    ("trailer", "x-t"),
    ("transfer-encoding", "chunked"),
    ("upgrade", "websocket"),
    ("proxy-authorization", "Basic x"),
    ("proxy-connection", "keep-alive"),
    ("cf-connecting-ip", "198.51.100.7"),
    ("cf-ray", "abc"),
    ("content-length", "12"),
    ("cookie", "session=client"),
    ("forwarded", "for=198.51.100.7"),
    ("x-forwarded-for", "198.51.100.7"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "http"),
    ("x-real-ip", "198.51.100.7"),
    ("true-client-ip", "198.51.100.7"),
    ("x-client-ip", "198.51.100.7"),
    ("x-cluster-client-ip", "10.0.0.1"),
    ("client-ip", "198.51.100.7"),
    ("fastly-client-ip", "198.51.100.7"),
    ("x-originating-ip", "198.51.100.7"),
    ("openai-organization", "org-chosen-by-client"),
    ("openai-project", "proj_chosen_by_client"),
]


def test_what_the_client_sends_passes_byte_identical_but_its_own_and_the_pools_fields():
    mixed = NOT_PASSED[:12] + PASSED[:6] + NOT_PASSED[12:] + PASSED[6:]
    sent = upstream_request_headers(Headers(mixed), [("x-api-key", "sk-upstream")])
    assert sent == PASSED + [("x-api-key", "sk-upstream")]


@pytest.mark.parametrize(
    "name",
    [
        "Cookie",
        "X-Forwarded-For",
        "X-Real-IP",
        "OpenAI-Organization",
        "OpenAI-Project",
        "Forwarded",
        "CF-Connecting-IP",
    ],
)
def test_field_names_are_matched_in_any_case(name):
    assert upstream_request_headers(Headers([(name, "v"), ("X-Stainless-OS", "Linux")]), []) == [
        ("x-stainless-os", "Linux")
    ]


ANSWERED = [
    ("content-type", "application/json"),
    ("request-id", "req_1"),
    ("retry-after", "3"),
    ("anthropic-ratelimit-requests-remaining", "3999"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("openai-processing-ms", "120"),
    ("x-request-id", "req_2"),
    ("cache-control", "no-cache"),
]
RELAYS_OWN = [
    ("set-cookie", "__cf_bm=abc; path=/; HttpOnly"),
    ("set-cookie", "_cfuvid=def; path=/"),
    ("set-cookie2", "old=1"),
    ("www-authenticate", 'Bearer realm="OpenAI"'),
    ("authentication-info", "x"),
    ("authorization", "Bearer sk-upstream"),
    ("x-api-key", "sk-upstream"),
    ("anthropic-organization-id", "1b2c-org"),
    ("openai-organization", "org-relay"),
    ("openai-project", "proj_relay"),
    ("access-control-allow-origin", "*"),
    ("connection", "close, x-hop"),
    ("x-hop", "1"),
    ("transfer-encoding", "chunked"),
    ("content-length", "10"),
    ("proxy-authenticate", "Basic"),
]


def test_what_the_upstream_answers_passes_but_its_connection_and_relays_own_fields():
    mixed = RELAYS_OWN[:8] + ANSWERED[:4] + RELAYS_OWN[8:] + ANSWERED[4:]
    assert client_response_headers(Headers(mixed)) == ANSWERED


def test_a_providers_configured_fields_may_set_what_no_client_may():
    """The organisation a pooled OpenAI key bills is relay's choice, made in RELAY_ROUTES."""
    routes = {
        "providers": {
            "openai": {
                "format": "openai",
                "base_url": "https://api.openai.example/v1",
                "keys": "OPENAI_API_KEYS",
                "headers": {"OpenAI-Organization": "org-relay"},
            }
        }
    }
    env = {"RELAY_CLIENT_KEYS": "client-key", "OPENAI_API_KEYS": "sk-oa-up", "RELAY_ROUTES": json.dumps(routes)}
    transport = RecordingTransport()
    client = Headers(
        [
            ("authorization", "Bearer client-key"),
            ("openai-organization", "org-client"),
            ("openai-project", "proj_client"),
            ("cookie", "a=b"),
            ("x-stainless-lang", "python"),
        ]
    )

    body = read_body(b'{"model": "gpt-4o-mini", "messages": []}')
    request = Request("POST", "/openai/v1/chat/completions", "", client, body)
    assert asyncio.run(handle(request, env, Services(transport=transport))).status == 200
    [(_, _, sent, _)] = transport.sent
    assert sent == [
        ("x-stainless-lang", "python"),
        ("openai-organization", "org-relay"),
        ("authorization", "Bearer sk-oa-up"),
    ]


@pytest.mark.parametrize(
    "value, token",
    [
        ("Bearer rk-abc", "rk-abc"),
        ("bearer  rk-abc ", "rk-abc"),  # the scheme in any case, the token without blanks
        ("BEARER rk-abc", "rk-abc"),
        ("Bearer ", None),
        ("Bearer", None),
        ("Basic cms6YWJj", None),
        ("rk-abc", None),
    ],
)
def test_a_bearer_token_is_read_in_any_case_of_the_scheme(value, token):
    assert bearer_token(Headers([("authorization", value)])) == token
    assert bearer_token(Headers()) is None
