"""The official anthropic SDK, pointed at relay, works as if it talked to the API."""

from __future__ import annotations

import anthropic
import pytest

from devtools.fake_upstream import REPLY_TEXT

from .conftest import ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, SECRETS


@pytest.fixture
def client(relay, tag):
    return anthropic.Anthropic(
        base_url=relay.url, api_key=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
    )


def _only(upstream, tag):
    seen = upstream.requests(tag)
    assert len(seen) == 1, [s.path for s in seen]
    return seen[0]


def test_message_reaches_the_upstream_with_its_key_and_comes_back(client, anthropic_upstream, tag):
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "Grüße, 世界 ✓"}],
        metadata={"user_id": "user-42"},
    )

    assert message.content[0].text == REPLY_TEXT
    assert message.usage.output_tokens == 12
    seen = _only(anthropic_upstream, tag)
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY
    assert seen.header("authorization") is None
    body = seen.json()
    assert body["metadata"] == {"user_id": "user-42"}
    assert body["messages"][0]["content"] == "Grüße, 世界 ✓"


# Fields a client may send that must not reach an upstream on relay's pooled key: its
# cookies, the addresses it claims, and OpenAI's choice of the organisation or project billed.
NOT_PASSED = {
    "cookie": "session=client-cookie",
    "forwarded": "for=198.51.100.7;proto=https",
    "x-forwarded-for": "198.51.100.7",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "http",
    "x-real-ip": "198.51.100.7",
    "true-client-ip": "198.51.100.7",
    "openai-organization": "org-chosen-by-client",
    "openai-project": "proj_chosen_by_client",
}


def test_sdk_headers_arrive_untouched(client, anthropic_upstream, tag):
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={
            "anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14",
            "x-claude-code-session-id": "0b6f7c1e-session",
            "x-custom-thing": "spaced  value",
            **NOT_PASSED,
        },
    )

    seen = _only(anthropic_upstream, tag)
    sent = dict(raw.http_request.headers)
    for name in (
        "anthropic-version",
        "anthropic-beta",
        "user-agent",
        "x-claude-code-session-id",
        "x-stainless-lang",
        "x-stainless-package-version",
        "x-stainless-os",
        "x-stainless-runtime",
        "x-stainless-retry-count",
        "x-stainless-arch",
    ):
        assert seen.header(name) == sent[name], name
    assert seen.header("x-custom-thing") == "spaced  value"
    names = [name.lower() for name, _ in seen.headers]
    # The only cf- field is the one the platform adds to every subrequest, as in production.
    assert [n for n in names if n.startswith("cf-")] == ["cf-worker"]
    assert not [n for n in names if n in NOT_PASSED]
    assert all(
        secret not in value for _, value in seen.headers for secret in SECRETS if secret != ANTHROPIC_UPSTREAM_KEY
    )


def test_upstream_response_headers_come_back(client):
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )

    assert raw.headers["request-id"].startswith("req_fake_")
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "3999"
    # The upstream's cookies and the account behind relay's key are not the client's.
    assert "set-cookie" not in raw.headers and "anthropic-organization-id" not in raw.headers


def test_stream_delivers_every_event(client, anthropic_upstream, tag):
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-events": "5"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_delta") == 5
    assert "".join(block.text for block in final.content) == REPLY_TEXT
    assert final.usage.output_tokens == 12
    assert _only(anthropic_upstream, tag).json()["stream"] is True


def test_query_string_is_kept(client, anthropic_upstream, tag):
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        extra_query={"beta": "true"},
    )

    assert _only(anthropic_upstream, tag).path == "/v1/messages?beta=true"


def test_count_tokens_and_models(client, anthropic_upstream, tag):
    counted = client.messages.count_tokens(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    models = client.models.list()

    assert counted.input_tokens > 0
    assert [m.id for m in models.data] == ["claude-sonnet-4-5"]
    assert [s.path for s in anthropic_upstream.requests(tag)] == ["/v1/messages/count_tokens", "/v1/models"]


@pytest.mark.parametrize(
    "status, error",
    [
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.APIStatusError),
        (404, anthropic.NotFoundError),
    ],
)
def test_upstream_errors_pass_through(client, status, error):
    with pytest.raises(error) as caught:
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": f"status-{status}"},
        )

    assert caught.value.status_code == status
    assert caught.value.body["error"]["message"] == f"fake upstream answered {status}"
    if status in (429, 529):
        assert caught.value.response.headers["retry-after"] == "0"


def test_wrong_key_is_rejected_before_the_upstream(relay, anthropic_upstream, tag):
    client = anthropic.Anthropic(
        base_url=relay.url, api_key="not-a-relay-key", max_retries=0, default_headers={"x-test-tag": tag}
    )
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])

    assert caught.value.body["error"]["type"] == "authentication_error"
    assert "not-a-relay-key" not in caught.value.response.text
    assert anthropic_upstream.requests(tag) == []


def test_bearer_token_clients_are_accepted(relay, anthropic_upstream, tag):
    """ANTHROPIC_AUTH_TOKEN makes Claude Code send `Authorization: Bearer` instead of x-api-key."""
    client = anthropic.Anthropic(
        base_url=relay.url, auth_token=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
    )
    client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])

    seen = _only(anthropic_upstream, tag)
    assert seen.header("authorization") is None
    assert seen.header("x-api-key") == ANTHROPIC_UPSTREAM_KEY
