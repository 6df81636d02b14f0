"""The official openai SDK works through relay with OPENAI_BASE_URL=<relay>/openai/v1."""

from __future__ import annotations

import openai
import pytest

from devtools.fake_upstream import REPLY_TEXT

from .conftest import CLIENT_KEY, OPENAI_UPSTREAM_KEY


@pytest.fixture
def client(relay, tag):
    return openai.OpenAI(
        base_url=relay.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
    )


def test_chat_completion_uses_the_upstream_key(client, openai_upstream, tag):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], user="user-7"
    )

    assert completion.choices[0].message.content == REPLY_TEXT
    (seen,) = openai_upstream.requests(tag)
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.header("authorization") == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert seen.header("x-api-key") is None
    assert seen.json()["user"] == "user-7"
    assert seen.header("x-stainless-lang") == "python"


def test_the_client_cannot_choose_the_organisation_and_does_not_learn_relays(client, openai_upstream, tag):
    """relay's key may belong to several organisations: the client must not pick the one
    billed, nor see which one that is; nor get the cookies of the provider's CDN."""
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={
            "openai-organization": "org-chosen-by-client",
            "openai-project": "proj_chosen",
            "cookie": "session=client-cookie",
            "x-forwarded-for": "198.51.100.7",
        },
    )

    (seen,) = openai_upstream.requests(tag)
    sent = {name.lower() for name, _ in seen.headers}
    assert not sent & {"openai-organization", "openai-project", "cookie", "x-forwarded-for"}
    assert seen.header("x-stainless-lang") == "python"
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert not {"set-cookie", "openai-organization", "openai-project"} & set(raw.headers.keys())


def test_streamed_chat_completion_with_usage(client, openai_upstream, tag):
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-events": "4"},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY_TEXT
    assert chunks[-1].usage.completion_tokens == 12


def test_models_embeddings_and_responses(client, openai_upstream, tag):
    models = client.models.list()
    embedding = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    response = client.responses.create(model="gpt-4o-mini", input="hi")

    assert [m.id for m in models.data] == ["gpt-4o-mini"]
    assert len(embedding.data) == 2
    assert response.output_text == REPLY_TEXT
    assert [s.path for s in openai_upstream.requests(tag)] == ["/v1/models", "/v1/embeddings", "/v1/responses"]


def test_upstream_rate_limit_passes_through(client):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "status-429"},
        )

    assert caught.value.response.headers["retry-after"] == "0"


def test_wrong_key_gets_an_openai_shaped_401(relay, openai_upstream, tag):
    client = openai.OpenAI(
        base_url=relay.url + "/openai/v1", api_key="sk-wrong", max_retries=0, default_headers={"x-test-tag": tag}
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    assert caught.value.code == "invalid_api_key"
    assert openai_upstream.requests(tag) == []


def test_both_sdks_side_by_side(relay, client, anthropic_upstream, openai_upstream):
    import anthropic

    claude = anthropic.Anthropic(base_url=relay.url, api_key=CLIENT_KEY, max_retries=0)
    a = claude.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    o = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    assert a.content[0].text == o.choices[0].message.content == REPLY_TEXT
