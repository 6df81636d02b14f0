"""Bad input gets a clear error in the client's own format, and nothing is forwarded."""

from __future__ import annotations

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream
from devtools.local_worker import LocalWorker, free_port

from .conftest import CLIENT_KEY, MAX_BODY_BYTES

ANTHROPIC = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
OPENAI = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}


def _anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    return body["error"]["message"]


def _openai_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


@pytest.fixture
def nothing_forwarded(anthropic_upstream, openai_upstream):
    before = anthropic_upstream.count + openai_upstream.count
    yield
    assert anthropic_upstream.count + openai_upstream.count == before


@pytest.mark.usefixtures("nothing_forwarded")
class TestRejectedBeforeTheUpstream:
    def test_unknown_route(self, relay):
        response = httpx.get(relay.url + "/v2/whatever", headers=ANTHROPIC)
        assert "no route" in _anthropic_error(response, 404, "not_found_error")

    def test_unknown_route_under_openai_prefix_is_openai_shaped(self, relay):
        response = httpx.get(relay.url + "/openai/v2/models", headers=OPENAI)
        assert "no route" in _openai_error(response, 404)

    @pytest.mark.parametrize("body", [b"{not json", b'{"model": "x", ', b"\xff\xfe\xfa", b"[1, 2]", b'"text"'])
    def test_messages_body_must_be_a_json_object(self, relay, body):
        response = httpx.post(relay.url + "/v1/messages", content=body, headers=ANTHROPIC)
        assert "JSON" in _anthropic_error(response, 400, "invalid_request_error")

    def test_chat_body_must_be_json(self, relay):
        response = httpx.post(relay.url + "/openai/v1/chat/completions", content=b"model=gpt", headers=OPENAI)
        assert "JSON" in _openai_error(response, 400)

    def test_body_over_the_limit(self, relay):
        body = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
        response = httpx.post(relay.url + "/v1/messages", content=body, headers=ANTHROPIC)
        assert str(MAX_BODY_BYTES) in _anthropic_error(response, 413, "request_too_large")

    def test_chunked_body_over_the_limit(self, relay):
        def chunks():
            yield b'{"pad": "'
            for _ in range(MAX_BODY_BYTES // 65536 + 1):
                yield b"x" * 65536
            yield b'"}'

        response = httpx.post(relay.url + "/openai/v1/chat/completions", content=chunks(), headers=OPENAI)
        _openai_error(response, 413)

    @pytest.mark.parametrize("path", ["/v1/%2e%2e/admin", "/v1/files%2f..%2fsecret"])
    def test_path_traversal(self, relay, path):
        response = httpx.get(relay.url + path, headers=ANTHROPIC)
        assert response.status_code in (400, 404)
        assert response.json()["type"] == "error"

    def test_missing_key(self, relay):
        response = httpx.post(
            relay.url + "/v1/messages", json={"model": "m"}, headers={"anthropic-version": "2023-06-01"}
        )
        _anthropic_error(response, 401, "authentication_error")

    def test_the_client_cannot_pass_its_own_upstream_key(self, relay):
        """A caller without a relay key cannot reach the upstream by sending a provider key."""
        response = httpx.post(
            relay.url + "/v1/messages",
            json={"model": "m"},
            headers={"x-api-key": "sk-ant-api03-someone-elses", "authorization": "Bearer x"},
        )
        _anthropic_error(response, 401, "authentication_error")


def test_large_body_under_the_limit_arrives_intact(relay, anthropic_upstream, tag):
    text = "päd " * (200 * 1024 // 5)
    response = httpx.post(
        relay.url + "/v1/messages",
        headers={**ANTHROPIC, "x-test-tag": tag},
        json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]},
    )

    assert response.status_code == 200
    (seen,) = anthropic_upstream.requests(tag)
    assert seen.json()["messages"][0]["content"] == text


def test_other_paths_pass_through_with_any_body(relay, anthropic_upstream, tag):
    """Paths relay does not interpret (files, batches, ...) are forwarded as bytes."""
    response = httpx.post(
        relay.url + "/v1/files?x=1",
        content=b"\x00binary\xff",
        headers={**ANTHROPIC, "content-type": "application/octet-stream", "x-test-tag": tag},
    )

    assert response.status_code == 404  # the fake has no files API; the answer is its own
    (seen,) = anthropic_upstream.requests(tag)
    assert (seen.path, seen.body) == ("/v1/files?x=1", b"\x00binary\xff")


def test_unreachable_upstream_and_missing_key():
    closed = f"http://127.0.0.1:{free_port()}"
    with LocalWorker(
        {
            "RELAY_CLIENT_KEYS": CLIENT_KEY,
            "ANTHROPIC_API_KEYS": "sk-ant-unreachable-test",
            "UPSTREAM_ANTHROPIC_URL": closed,
            "UPSTREAM_OPENAI_URL": closed + "/v1",
        }
    ) as worker:
        unreachable = httpx.post(worker.url + "/v1/messages", json={"model": "m"}, headers=ANTHROPIC)
        no_key = httpx.post(worker.url + "/openai/v1/chat/completions", json={"model": "m"}, headers=OPENAI)
        log = worker.log()

    assert "could not be reached" in _anthropic_error(unreachable, 502, "api_error")
    assert "no upstream key configured for openai" in _openai_error(no_key, 500)
    assert "Traceback" not in unreachable.text + no_key.text
    assert "sk-ant-unreachable-test" not in log and CLIENT_KEY not in log


def test_invalid_configuration_is_reported_at_the_first_request():
    with (
        FakeUpstream("anthropic") as fake,
        LocalWorker(
            {
                "RELAY_CLIENT_KEYS": CLIENT_KEY,
                "ANTHROPIC_API_KEYS": "sk-a",
                "UPSTREAM_ANTHROPIC_URL": fake.url,
                "RELAY_MAX_BODY_BYTES": "lots",
            }
        ) as worker,
    ):
        answer = httpx.post(worker.url + "/v1/messages", json={"model": "m"}, headers=ANTHROPIC)

    message = _anthropic_error(answer, 500, "api_error")
    assert "RELAY_MAX_BODY_BYTES" in message and "lots" not in message
    assert fake.count == 0


def test_large_body_without_a_key_gets_the_401_not_a_reset(relay, anthropic_upstream):
    before = anthropic_upstream.count
    response = httpx.post(
        relay.url + "/v1/messages", content=b"x" * (4 * MAX_BODY_BYTES), headers={"content-type": "application/json"}
    )

    _anthropic_error(response, 401, "authentication_error")
    assert anthropic_upstream.count == before
