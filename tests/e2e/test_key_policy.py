"""What a relay key with an allowed-model list, a monthly budget or a stream limit may reach,
through the Worker on workerd: only the endpoints whose model, cost and streams relay reads;
every other one is refused in the client's format before the upstream is called, and so is
a budget key's request for a model relay cannot price. Spellings of a route relay
reads (a trailing slash, an empty or encoded segment, `;` parameters) are refused for every
key: relay would not check them, the upstream might serve them."""

from __future__ import annotations

from dataclasses import dataclass, field

import anthropic
import httpx
import pytest

from devtools.fake_upstream import REPLY_TEXT
from tests.clients import run_claude

from .conftest import CLIENT_KEY, create_key
from .conftest import session_rows as rows

HAIKU = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
OPUS = {**HAIKU, "model": "claude-opus-4-1"}

# Endpoints relay does not read, each asked for with a body naming a model the key may not use.
UNREAD = [
    ("anthropic", "POST", "/v1/messages/batches", {"requests": [{"custom_id": "a", "params": OPUS}]}),
    (
        "anthropic",
        "POST",
        "/v1/complete",
        {"model": "claude-opus-4-1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 8},
    ),
    ("anthropic", "GET", "/v1/messages/batches", None),
    ("anthropic", "GET", "/v1/files", None),
    ("openai", "POST", "/openai/v1/fine_tuning/jobs", {"model": "gpt-4o", "training_file": "file-x"}),
    ("openai", "POST", "/openai/v1/images/generations", {"model": "gpt-image-1", "prompt": "a cat"}),
    ("openai", "POST", "/openai/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy"}),
    (
        "openai",
        "POST",
        "/openai/v1/batches",
        {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
    ),
    ("openai", "POST", "/openai/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"}),
]

VARIANTS = [
    ("/v1/messages/", "/v1/messages"),
    ("/v1//messages", "/v1/messages"),
    ("/v1/%6Dessages", "/v1/messages"),
    ("/v1/messages;x", "/v1/messages"),
    ("/v1/Messages", "/v1/messages"),
    ("/v1/messages/count_tokens/", "/v1/messages/count_tokens"),
    ("/openai/v1/chat/completions/", "/openai/v1/chat/completions"),
    ("/openai/v1//chat/completions", "/openai/v1/chat/completions"),
    ("/openai/v1/chat/%63ompletions", "/openai/v1/chat/completions"),
]


def _headers(surface: str, key: str, tag: str) -> dict[str, str]:
    auth = (
        {"x-api-key": key, "anthropic-version": "2023-06-01"}
        if surface == "anthropic"
        else {"authorization": f"Bearer {key}"}
    )
    return {**auth, "x-test-tag": tag, "x-claude-code-session-id": tag}


def _error(answer: httpx.Response, status: int, surface: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["x-should-retry"] == "false"
    body = answer.json()
    if surface == "anthropic":
        assert body["type"] == "error"
    return body["error"]["message"]


@dataclass(frozen=True)
class Key:
    id: str
    key: str = field(repr=False)  # a failing test's report shows its fixtures: never the key


@pytest.fixture(scope="module")
def limited_keys(relay):
    """A key with an allowed-model list, one with only a budget, one with only a stream limit."""
    made = {
        "allow-list": create_key(relay, allowed_models=["claude-haiku-*", "gpt-4o-mini"]),
        "budget": create_key(relay, monthly_budget_usd=100),
        "streams": create_key(relay, max_concurrent_streams=1),
    }
    return {kind: Key(record["id"], record["key"]) for kind, record in made.items()}


# What relay must read of a request to keep each limit, as a refusal names it.
READS = {
    "allow-list": "whose model relay reads",
    "budget": "whose cost relay reads",
    "streams": "whose streams relay reads",
}


@pytest.mark.parametrize("kind", READS)
@pytest.mark.parametrize("surface, method, path, body", UNREAD, ids=[f"{m} {p}" for _, m, p, _ in UNREAD])
def test_a_limited_key_cannot_reach_an_endpoint_relay_does_not_read(
    relay, anthropic_upstream, openai_upstream, limited_keys, tag, kind, surface, method, path, body
):
    key = limited_keys[kind]
    answer = httpx.request(method, relay.url + path, json=body, headers=_headers(surface, key.key, tag))
    message = _error(answer, 403, surface)
    assert f"{method} {path}" in message and key.id in message
    assert READS[kind] in message
    assert anthropic_upstream.requests(tag) == openai_upstream.requests(tag) == []
    [row] = rows(relay, tag, 1)
    assert (row["status"], row["key_id"], row["upstream_key_id"]) == (403, key.id, None)


def test_a_key_without_limits_still_reaches_every_v1_path(relay, anthropic_upstream, openai_upstream, tag):
    for surface, method, path, body in UNREAD:
        httpx.request(method, relay.url + path, json=body, headers=_headers(surface, CLIENT_KEY, tag))
    reached = [(s.method, s.path) for s in anthropic_upstream.requests(tag) + openai_upstream.requests(tag)]
    upstream_paths = [(m, p.removeprefix("/openai")) for _, m, p, _ in UNREAD]
    assert reached == upstream_paths


@pytest.mark.parametrize("kind", ["allow-list", "budget"])
def test_a_limited_key_reads_the_model_list_and_counts_tokens(relay, anthropic_upstream, limited_keys, tag, kind):
    headers = _headers("anthropic", limited_keys[kind].key, tag)
    assert httpx.get(relay.url + "/v1/models", headers=headers).status_code == 200
    counted = httpx.post(
        relay.url + "/v1/messages/count_tokens",
        headers=headers,
        json={"model": "claude-haiku-4-5", "messages": HAIKU["messages"]},
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert httpx.post(relay.url + "/v1/messages", json=HAIKU, headers=headers).status_code == 200
    assert [s.path for s in anthropic_upstream.requests(tag)] == [
        "/v1/models",
        "/v1/messages/count_tokens",
        "/v1/messages",
    ]


def test_a_stream_limited_key_cannot_stream_past_its_limit_through_an_endpoint_relay_does_not_read(
    relay, anthropic_upstream, tag
):
    """With its one stream held open, a legacy completion streaming would be a second one
    that relay neither sees stream nor counts."""
    key = create_key(relay, max_concurrent_streams=1)
    client = anthropic.Anthropic(
        base_url=relay.url,
        api_key=key["key"],
        max_retries=0,
        default_headers={"x-test-tag": tag, "x-claude-code-session-id": tag},
    )
    gate = f"{tag}-gate"
    with client.messages.stream(**HAIKU, extra_headers={"x-fake-gate": gate}) as held:
        assert next(iter(held)).type == "message_start"
        with pytest.raises(anthropic.RateLimitError):  # the limit, where relay reads the stream
            client.messages.create(**HAIKU, stream=True)
        legacy = httpx.post(
            relay.url + "/v1/complete",
            headers=_headers("anthropic", key["key"], tag),
            json={
                "model": "claude-2.1",
                "prompt": "\n\nHuman: hi\n\nAssistant:",
                "max_tokens_to_sample": 8,
                "stream": True,
            },
        )
        message = _error(legacy, 403, "anthropic")
        assert message.startswith(
            f"relay key {key['id']} has a limit on open streams, so it may use only the "
            f"endpoints whose streams relay reads"
        )
        anthropic_upstream.release(gate)
        assert held.get_final_text() == REPLY_TEXT
    assert [s.path for s in anthropic_upstream.requests(tag)] == ["/v1/messages"]


@pytest.mark.parametrize(
    "surface, path, body, model",
    [
        ("anthropic", "/v1/messages", {**HAIKU, "model": "claude-2.1"}, "claude-2.1"),
        ("openai", "/openai/v1/chat/completions", {"model": "o3", "stream": True, "messages": HAIKU["messages"]}, "o3"),
    ],
)
def test_a_budget_key_cannot_spend_on_a_model_relay_cannot_price(
    relay, anthropic_upstream, openai_upstream, limited_keys, tag, surface, path, body, model
):
    """Its row would cost NULL, nothing against the budget: the key could spend without end."""
    key = limited_keys["budget"]
    answer = httpx.post(relay.url + path, json=body, headers=_headers(surface, key.key, tag))
    message = _error(answer, 403, surface)
    assert message == (
        f"relay key {key.id} has a monthly budget, and relay has no price for model {model}: "
        f"its cost would count nothing against the budget (RELAY_PRICES can give it one)"
    )
    assert anthropic_upstream.requests(tag) == openai_upstream.requests(tag) == []
    [row] = rows(relay, tag, 1)
    assert (row["status"], row["model_requested"], row["cost_usd"]) == (403, model, None)
    unlimited = httpx.post(relay.url + path, json=body, headers=_headers(surface, CLIENT_KEY, tag))
    assert unlimited.status_code == 200  # a key without a budget: served, its row unpriced as before


def test_claude_code_works_with_a_key_that_has_both_limits(relay, anthropic_upstream, tag):
    key = create_key(relay, allowed_models=["claude-haiku-*"], monthly_budget_usd=100)
    run = run_claude(relay.url, api_key=key["key"], headers={"x-test-tag": tag}, args=["--model", "claude-haiku-4-5"])
    assert run.returncode == 0 and REPLY_TEXT in run.stdout
    assert [(s.method, s.path) for s in anthropic_upstream.requests(tag)] == [("POST", "/v1/messages?beta=true")]


def test_an_allow_list_key_must_name_its_model(relay, openai_upstream, limited_keys, tag):
    """A stored prompt (or a previous response) chooses a model relay cannot check."""
    headers = _headers("openai", limited_keys["allow-list"].key, tag)
    stored = httpx.post(
        relay.url + "/openai/v1/responses",
        headers=headers,
        json={"prompt": {"id": "pmpt_opus_behind_it", "version": "2"}, "input": "hi"},
    )
    assert "names no model" in _error(stored, 403, "openai")
    assert openai_upstream.requests(tag) == []


def test_a_model_given_twice_is_refused_for_a_limited_key(relay, anthropic_upstream, limited_keys, tag):
    """relay would check the last one; an upstream may take the first."""
    body = b'{"model": "claude-opus-4-1", "model": "claude-haiku-4-5", "max_tokens": 8, "messages": []}'
    answer = httpx.post(
        relay.url + "/v1/messages",
        content=body,
        headers={**_headers("anthropic", limited_keys["allow-list"].key, tag), "content-type": "application/json"},
    )
    assert "more than once" in _error(answer, 400, "anthropic")
    assert anthropic_upstream.requests(tag) == []


def test_a_budget_key_cannot_turn_off_a_streams_usage(relay, openai_upstream, limited_keys, tag):
    """Without the usage chunk the stream would cost nothing in relay's log."""
    answer = httpx.post(
        relay.url + "/openai/v1/chat/completions",
        headers=_headers("openai", limited_keys["budget"].key, tag),
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": False},
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert "include_usage" in _error(answer, 403, "openai")
    assert openai_upstream.requests(tag) == []


@pytest.mark.parametrize("path, canonical", VARIANTS)
def test_another_spelling_of_a_route_relay_reads_is_refused(
    relay, anthropic_upstream, openai_upstream, limited_keys, tag, path, canonical
):
    surface = "openai" if canonical.startswith("/openai/") else "anthropic"
    body = OPUS if surface == "anthropic" else {"model": "gpt-4o", "messages": HAIKU["messages"]}
    for key in (CLIENT_KEY, limited_keys["allow-list"].key):
        answer = httpx.post(relay.url + path, json=body, headers=_headers(surface, key, tag))
        message = _error(answer, 400, surface)
        assert canonical in message
    assert anthropic_upstream.requests(tag) == openai_upstream.requests(tag) == []
