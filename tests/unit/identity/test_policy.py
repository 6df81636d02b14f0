"""What a relay key with an allowed-model list or a budget may ask for (policy.py), driven
through relay.pipeline.app.handle with keys in SQLite standing in for D1."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.messages import Headers, Request
from relay.identity import key_store
from relay.identity.policy import limited
from relay.identity.relay_keys import Caller
from relay.pipeline.app import handle
from relay.services import Services
from tests.fakes.platform import RecordingTransport, SqliteDatabase
from tests.fakes.streams import read_body

NOW = 1_800_000_000.0
ENV = {"RELAY_CLIENT_KEYS": "static-key", "ANTHROPIC_API_KEYS": "sk-ant-up", "OPENAI_API_KEYS": "sk-oa-up"}
LIMITS = {
    "allow-list": {"allowed_models": ["claude-haiku-*", "gpt-4o-mini"]},
    "budget": {"monthly_budget_usd": 50.0},
    "streams": {"max_concurrent_streams": 2},
}
# How a refusal names each limit, and what relay must read to keep it.
NAMED = {
    "allow-list": ("an allowed-model list", "model"),
    "budget": ("a monthly budget", "cost"),
    "streams": ("a limit on open streams", "streams"),
}
HAIKU = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


class Relay:
    """relay's pipeline with its own D1 and a recording upstream."""

    def __init__(self):
        self.transport = RecordingTransport()
        self.services = Services(transport=self.transport, db=SqliteDatabase())
        self.env = ENV  # read on the first call (the isolate's settings)

    def key(self, **fields) -> tuple[str, str]:
        record, key = asyncio.run(key_store.create_key(self.services.db, now=NOW, name="k", **fields))
        return record["id"], key

    def call(self, key: str, method: str, path: str, body: None | bytes | dict = None):
        raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()

        headers = Headers([("x-api-key", key), ("authorization", f"Bearer {key}")])
        response = asyncio.run(handle(Request(method, path, "", headers, read_body(raw)), self.env, self.services))
        return response.status, json.loads(response.body) if response.body else None

    @property
    def reached(self) -> list[tuple[str, str]]:
        return [(method, url) for method, url, _, _ in self.transport.sent]


@pytest.fixture
def relay():
    return Relay()


def message(answer) -> str:
    return answer[1]["error"]["message"]


UNREAD = [
    (
        "POST",
        "/v1/messages/batches",
        {"requests": [{"custom_id": "a", "params": {**HAIKU, "model": "claude-opus-4-1"}}]},
    ),
    ("POST", "/v1/complete", {"model": "claude-opus-4-1", "prompt": "hi", "max_tokens_to_sample": 8}),
    ("GET", "/v1/messages/batches/msgbatch_1/results", None),
    ("GET", "/v1/files/file_1/content", None),
    ("POST", "/openai/v1/fine_tuning/jobs", {"model": "gpt-4o", "training_file": "file-x"}),
    ("POST", "/openai/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "alloy"}),
    ("POST", "/openai/v1/realtime/sessions", {"model": "gpt-4o-realtime-preview"}),
    ("GET", "/openai/v1/responses/resp_1", None),
]


@pytest.mark.parametrize("kind", LIMITS)
@pytest.mark.parametrize("method, path, body", UNREAD)
def test_a_limited_key_gets_403_for_an_endpoint_relay_does_not_read(relay, kind, method, path, body):
    key_id, key = relay.key(**LIMITS[kind])
    answer = relay.call(key, method, path, body)
    assert answer[0] == 403 and relay.reached == []
    if path.startswith("/openai/"):
        assert answer[1]["error"]["code"] == "permission_denied"
    else:
        assert answer[1]["type"] == "error" and answer[1]["error"]["type"] == "permission_error"
    limit, read = NAMED[kind]
    assert message(answer).startswith(
        f"relay key {key_id} has {limit}, so it may use only the endpoints whose {read} relay reads (POST "
    )
    assert message(answer).endswith(f"; {method} {path} is not one of them")


def test_a_key_with_several_limits_names_each(relay):
    key_id, key = relay.key(**LIMITS["allow-list"], **LIMITS["budget"])
    answer = relay.call(key, "POST", "/v1/complete", {"model": "claude-haiku-4-5"})
    assert (
        f"relay key {key_id} has an allowed-model list and a monthly budget, so it may use only the "
        f"endpoints whose model and cost relay reads"
    ) in message(answer)
    key_id, key = relay.key(**LIMITS["allow-list"], **LIMITS["budget"], **LIMITS["streams"])
    answer = relay.call(key, "POST", "/v1/complete", {"model": "claude-haiku-4-5"})
    assert (
        f"relay key {key_id} has an allowed-model list, a monthly budget and a limit on open streams, so it "
        f"may use only the endpoints whose model, cost and streams relay reads"
    ) in message(answer)


def test_a_stream_limited_key_cannot_stream_through_an_endpoint_relay_does_not_read(relay):
    """Relay counts the streams it sees (`"stream": true` on a route it reads): a legacy
    completion would stream past the limit, uncounted."""
    key_id, key = relay.key(max_concurrent_streams=1)
    answer = relay.call(
        key, "POST", "/v1/complete", {"model": "claude-2.1", "prompt": "hi", "stream": True, "max_tokens_to_sample": 8}
    )
    assert answer[0] == 403 and relay.reached == []
    assert message(answer).startswith(
        f"relay key {key_id} has a limit on open streams, so it may use only the endpoints whose streams relay reads"
    )


@pytest.mark.parametrize("fields", [{}, {"rpm_limit": 100}, {"cache_policy": "off"}])
@pytest.mark.parametrize("method, path, body", UNREAD)
def test_keys_without_an_allow_list_budget_or_stream_limit_reach_every_v1_path(relay, fields, method, path, body):
    key = relay.key(**fields)[1] if fields else "static-key"
    assert relay.call(key, method, path, body)[0] == 200
    assert len(relay.reached) == 1 and relay.reached[0][1].endswith(path.removeprefix("/openai/v1"))


@pytest.mark.parametrize("kind", LIMITS)
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/claude-haiku-4-5", None),
        ("GET", "/openai/v1/models/gpt-4o-mini", None),
        ("POST", "/v1/messages/count_tokens", {"model": "claude-haiku-4-5", "messages": []}),
        ("POST", "/v1/messages", HAIKU),
        ("POST", "/openai/v1/embeddings", {"model": "gpt-4o-mini", "input": "hi"}),
    ],
)
def test_a_limited_key_reaches_the_endpoints_relay_reads(relay, kind, method, path, body):
    assert relay.call(relay.key(**LIMITS[kind])[1], method, path, body)[0] == 200
    assert len(relay.reached) == 1


# Why a key with each limit must name its model: a stored prompt or an earlier response
# would choose one after relay let the request go.
NAMELESS = {
    "allow-list": "may use only the models claude-haiku-*, gpt-4o-mini, and this request names no model (a stored "
    'prompt or an earlier response would choose one relay cannot check): give "model"',
    "budget": "has a monthly budget, so relay must price each request before sending it, and this request names no "
    'model (a stored prompt or an earlier response would choose one): give "model"',
}


@pytest.mark.parametrize("kind", NAMELESS)
@pytest.mark.parametrize(
    "body",
    [
        {"prompt": {"id": "pmpt_1"}, "input": "hi"},
        {"previous_response_id": "resp_1", "input": "hi"},
        {"model": ["gpt-4o-mini"], "input": "hi"},
    ],
)
def test_an_allow_list_or_budget_key_must_name_its_model(relay, kind, body):
    key_id, key = relay.key(**LIMITS[kind])
    answer = relay.call(key, "POST", "/openai/v1/responses", body)
    assert answer[0] == 403 and relay.reached == []
    assert message(answer) == f"relay key {key_id} {NAMELESS[kind]}"


@pytest.mark.parametrize(
    "path, body, model",
    [
        ("/v1/messages", {**HAIKU, "model": "claude-2.1"}, "claude-2.1"),
        ("/openai/v1/chat/completions", {"model": "o3", "messages": [], "stream": True}, "o3"),
        ("/openai/v1/embeddings", {"model": "my-embedder", "input": "hi"}, "my-embedder"),
    ],
)
def test_a_budget_key_may_not_ask_for_a_model_relay_cannot_price(relay, path, body, model):
    """Its row would cost nothing (NULL), so the budget would never run out."""
    key_id, key = relay.key(**LIMITS["budget"])
    answer = relay.call(key, "POST", path, body)
    assert answer[0] == 403 and relay.reached == []
    assert message(answer) == (
        f"relay key {key_id} has a monthly budget, and relay has no price for model "
        f"{model}: its cost would count nothing against the budget (RELAY_PRICES can "
        f"give it one)"
    )
    assert relay.call("static-key", "POST", path, body)[0] == 200  # no budget: recorded unpriced, as before


def test_a_price_in_relay_prices_lets_a_budget_key_use_the_model(relay):
    relay.env = {**ENV, "RELAY_PRICES": '{"claude-2*": {"input": 8, "output": 24}}'}
    key = relay.key(**LIMITS["budget"])[1]
    assert relay.call(key, "POST", "/v1/messages", {**HAIKU, "model": "claude-2.1"})[0] == 200


def test_a_budget_key_counts_tokens_of_any_model(relay):
    """Counting tokens is free: nothing to price."""
    body = {"model": "claude-2.1", "messages": HAIKU["messages"]}
    assert relay.call(relay.key(**LIMITS["budget"])[1], "POST", "/v1/messages/count_tokens", body)[0] == 200


def test_a_budget_key_may_not_reach_an_unpriced_model_through_a_route(relay):
    """The row prices the model that served the request: each target a route may send it to."""
    routes = {
        "providers": {
            "groq": {"format": "openai", "base_url": "https://groq.invalid/openai/v1", "keys": "GROQ_API_KEYS"}
        },
        "routes": [
            {
                "model": "claude-haiku-*",
                "targets": [{"provider": "anthropic"}, {"provider": "groq", "model": "llama-3.3-70b"}],
            }
        ],
    }
    relay.env = {**ENV, "GROQ_API_KEYS": "gsk-up", "RELAY_ROUTES": json.dumps(routes)}
    key_id, key = relay.key(**LIMITS["budget"])
    answer = relay.call(key, "POST", "/v1/messages", HAIKU)
    assert answer[0] == 403 and relay.reached == []
    assert message(answer).startswith(
        f"relay key {key_id} has a monthly budget, and relay has no price for model "
        f"llama-3.3-70b (what provider groq serves for claude-haiku-4-5): "
    )


def test_a_model_outside_the_allow_list_is_403(relay):
    key_id, key = relay.key(**LIMITS["allow-list"])
    answer = relay.call(key, "POST", "/v1/messages", {**HAIKU, "model": "claude-opus-4-1"})
    assert answer[0] == 403 and message(answer) == f"relay key {key_id} may not use model claude-opus-4-1"


@pytest.mark.parametrize("kind", LIMITS)
@pytest.mark.parametrize(
    "raw, problem",
    [
        (
            b'{"model": "claude-opus-4-1", "model": "claude-haiku-4-5", "max_tokens": 8, "messages": []}',
            "the request body gives model more than once",
        ),
        (
            b'{"model": "claude-haiku-4-5", "stream": false, "max_tokens": 8, "messages": [], "stream": true}',
            "the request body gives stream more than once",
        ),
        (json.dumps(HAIKU).encode("utf-16"), "as UTF-8 JSON, and this body is not"),
        (json.dumps({**HAIKU, "stream": "true"}).encode(), '"stream" must be true or false'),
    ],
)
def test_a_limited_keys_body_must_read_the_same_to_relay_and_the_upstream(relay, kind, raw, problem):
    answer = relay.call(relay.key(**LIMITS[kind])[1], "POST", "/v1/messages", raw)
    assert answer[0] == 400 and problem in message(answer) and relay.reached == []


def test_a_key_without_limits_sends_such_bodies_on_as_before(relay):
    raw = b'{"model": "claude-opus-4-1", "model": "claude-haiku-4-5", "max_tokens": 8, "messages": []}'
    assert relay.call("static-key", "POST", "/v1/messages", raw)[0] == 200
    assert relay.transport.sent[0][3] == raw


@pytest.mark.parametrize(
    "path, body, unmetered",
    [
        ("/openai/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "background": True}, "a background response"),
        (
            "/openai/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [], "stream": True, "stream_options": {"include_usage": False}},
            "stream_options.include_usage",
        ),
        (
            "/openai/v1/completions",
            {"model": "gpt-4o-mini", "prompt": "hi", "stream": True, "stream_options": {"include_usage": None}},
            "stream_options.include_usage",
        ),
    ],
)
def test_a_budget_key_may_not_make_a_request_relay_cannot_meter(relay, path, body, unmetered):
    key_id, key = relay.key(**LIMITS["budget"])
    answer = relay.call(key, "POST", path, body)
    assert answer[0] == 403 and relay.reached == []
    assert message(answer).startswith(f"relay key {key_id} has a monthly budget, so relay must read the cost of ")
    assert unmetered in message(answer)
    assert relay.call(relay.key(**LIMITS["allow-list"])[1], "POST", path, body)[0] == 200  # the model is checked


@pytest.mark.parametrize(
    "path, body",
    [
        ("/openai/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [], "stream": True}),
        (
            "/openai/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [], "stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            "/openai/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [], "stream": False, "stream_options": {"include_usage": False}},
        ),
        (
            "/openai/v1/responses",
            {
                "model": "gpt-4o-mini",
                "input": "hi",
                "stream": True,
                "background": False,
                "stream_options": {"include_obfuscation": False},
            },
        ),
    ],
)
def test_a_budget_key_streams_whatever_relay_can_meter(relay, path, body):
    assert relay.call(relay.key(**LIMITS["budget"])[1], "POST", path, body)[0] == 200


@pytest.mark.parametrize(
    "caller, expected",
    [
        (Caller("k"), False),
        (Caller("k", rpm_limit=10, cache_policy="off"), False),
        (Caller("k", max_concurrent_streams=1), True),
        (Caller("k", allowed_models=("claude-*",)), True),
        (Caller("k", monthly_budget_usd=0.0), True),
    ],
)
def test_limited(caller, expected):
    assert limited(caller) is expected


@pytest.mark.parametrize("model, allowed", [(None, False), ("claude-haiku-4-5", True), ("claude-opus-4-1", False)])
def test_with_an_allow_list_a_request_naming_no_model_may_use_none(model: str | None, allowed):
    assert Caller("k", allowed_models=("claude-haiku-*",)).may_use(model) is allowed
    assert Caller("k").may_use(model) is True
