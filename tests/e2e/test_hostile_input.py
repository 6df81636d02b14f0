"""Hostile input: each gets a clear 4xx in the client's format, nothing is forwarded that
should not be, and relay never answers 500 or shows a stack trace."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, OPENAI_UPSTREAM_KEY

ANTHROPIC = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}


@pytest.fixture
def counted(anthropic_upstream, openai_upstream):
    """How many requests reached either upstream during the test."""
    before = anthropic_upstream.count + openai_upstream.count
    return lambda: anthropic_upstream.count + openai_upstream.count - before


def _is_clear_error(response: httpx.Response, status: int, surface: str = "anthropic") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert "Traceback" not in response.text
    if surface == "anthropic":
        assert body["type"] == "error" and body["error"]["message"]
    else:
        assert body["error"]["message"] and "type" in body["error"]
    return body["error"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "claude-sonnet-4-5", "messages": [',  # truncated
        b'{"model": "claude-sonnet-4-5",}',  # malformed
        b'{"model": "\xff\xfe caf\xe9"}',  # not UTF-8
        b"model=claude&messages=hi",  # a form, not JSON
        b"",  # nothing
    ],
)
def test_bodies_that_are_not_json_objects(relay, counted, body):
    for path, headers, surface in (
        ("/v1/messages", ANTHROPIC, "anthropic"),
        ("/openai/v1/chat/completions", OPENAI, "openai"),
    ):
        answer = httpx.post(
            relay.url + path, content=body, headers={**headers, "content-type": "application/x-www-form-urlencoded"}
        )
        _is_clear_error(answer, 400, surface)
    assert counted() == 0


def test_a_20_mb_body_is_refused_before_the_upstream(relay, counted):
    answer = httpx.post(
        relay.url + "/v1/messages", content=b"{" + b" " * (20 * 1024 * 1024) + b"}", headers=ANTHROPIC, timeout=60
    )
    assert _is_clear_error(answer, 413)["type"] == "request_too_large"
    assert counted() == 0


def test_huge_headers_are_refused_and_not_forwarded(relay, counted):
    answer = httpx.post(
        relay.url + "/v1/messages", json={"model": "m"}, headers={**ANTHROPIC, "x-padding": "a" * (256 * 1024)}
    )
    assert 400 <= answer.status_code < 500 and "Traceback" not in answer.text
    assert counted() == 0


@pytest.mark.parametrize(
    "line",
    [
        b"x-injected: a\rx-api-key: sk-evil",  # a bare CR inside a field
        b"x-injected: a\r\n\tx-api-key: sk-evil",  # an obsolete line fold
        b"x-inj ected: a",  # a space inside a field name
    ],
)
def test_header_injection_attempts_never_reach_the_upstream_as_fields(relay, anthropic_upstream, tag, line):
    """The HTTP layer in front of the Worker refuses such a request, or (an obsolete fold)
    joins the folded text into the field before it: either way no field is injected."""
    host, port = urlsplit(relay.url).hostname, urlsplit(relay.url).port
    body = b'{"model":"m","max_tokens":1,"messages":[]}'
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: relay\r\nx-api-key: "
        + CLIENT_KEY.encode()
        + b"\r\nx-test-tag: "
        + tag.encode()
        + b"\r\ncontent-type: application/json\r\n"
        + line
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nconnection: close\r\n\r\n"
        + body
    )
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert b"Traceback" not in answer
    if status == 200:
        [seen] = anthropic_upstream.requests(tag)
        assert [value for name, value in seen.headers if name.lower() == "x-api-key"] == [ANTHROPIC_UPSTREAM_KEY]
        assert "sk-evil" in seen.header("x-injected")
    else:
        assert 400 <= status < 500, answer[:300]
        assert anthropic_upstream.requests(tag) == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1/%2e%2e/admin/keys",
        "/v1/messages/%2E%2E/%2e%2e/admin/keys",
        "/openai/v1/..%2fadmin/keys",
        "/v1/files%5c..%5cadmin",
    ],
)
def test_traversal_out_of_the_api_tree(relay, counted, path):
    """The runtime's URL parser resolves encoded dot segments (so a path may land on the
    admin API, which a relay key does not open); what is left relay refuses itself."""
    answer = httpx.post(relay.url + path, json={"model": "m"}, headers=ANTHROPIC)
    assert answer.status_code in (400, 401, 404) and "Traceback" not in answer.text
    assert counted() == 0


def test_the_client_cannot_choose_the_upstream_or_its_credential(relay, anthropic_upstream, openai_upstream, tag):
    steering = {
        "x-test-tag": tag,
        "x-forwarded-host": "evil.example",
        "forwarded": "host=evil.example",
        "x-upstream-url": "http://evil.example",
        "x-relay-upstream": "http://evil.example",
        "x-real-ip": "10.0.0.1",
    }
    answer = httpx.post(
        relay.url + "/v1/messages",
        json={"model": "m", "max_tokens": 1, "messages": []},
        headers={**ANTHROPIC, **steering, "authorization": "Bearer sk-ant-client-supplied"},
    )
    assert answer.status_code == 200
    [seen] = anthropic_upstream.requests(tag)
    assert seen.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY
    assert seen.header("authorization") is None
    assert seen.header("host") == urlsplit(anthropic_upstream.url).netloc
    assert [seen.header(name) for name in ("x-forwarded-host", "forwarded", "x-real-ip")] == [None] * 3

    answer = httpx.post(
        relay.url + "/openai/v1/chat/completions",
        json={"model": "m", "messages": []},
        headers={**OPENAI, **steering, "x-api-key": "sk-oa-client-supplied"},
    )
    assert answer.status_code == 200
    [seen] = openai_upstream.requests(tag)
    assert seen.header("authorization") == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert seen.header("x-api-key") is None
    assert seen.header("host") == urlsplit(openai_upstream.url).netloc


def test_wrong_methods_and_content_types_are_answered_in_the_clients_format(relay, counted):
    for method in ("PUT", "DELETE", "PATCH"):
        answer = httpx.request(method, relay.url + "/nothing-here", headers=ANTHROPIC)
        _is_clear_error(answer, 404)
    answer = httpx.post(relay.url + "/openai/v1/chat/completions", content=b"\x00\x01", headers=OPENAI)
    _is_clear_error(answer, 400, "openai")
    assert counted() == 0


@pytest.mark.parametrize(
    "path, body",
    [
        (
            "/openai/v1/chat/completions",  # relay writes a stream's body again, asking for usage
            rb'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a\ud800"}]}',
        ),
        (
            "/v1/messages",  # the session in metadata.user_id is hashed to pick the upstream key
            rb'{"model":"claude-sonnet-4-5","max_tokens":8,"metadata":{"user_id":"\udc00"},'
            rb'"messages":[{"role":"user","content":"a\ud800"}]}',
        ),
    ],
)
def test_a_lone_surrogate_in_a_body_goes_on_as_the_client_wrote_it(
    relay, anthropic_upstream, openai_upstream, tag, path, body
):
    """JSON lets a client write one; no UTF-8 text holds one: relay once answered 500."""
    on_anthropic = path.startswith("/v1/")
    answer = httpx.post(
        relay.url + path, content=body, headers={**(ANTHROPIC if on_anthropic else OPENAI), "x-test-tag": tag}
    )
    assert answer.status_code == 200, answer.text
    [seen] = (anthropic_upstream if on_anthropic else openai_upstream).requests(tag)
    assert rb"a\ud800" in seen.body
