"""RELAY_ROUTES: validation, which targets a model gets, and what each target is sent."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from relay.config import NAMES, ConfigError, Settings, settings_for
from relay.http.messages import Headers, Request, Response
from relay.pipeline.app import handle
from relay.pipeline.endpoints import resolve
from relay.providers import target_call
from relay.services import IsolateState, Services
from tests.fakes.streams import read_body

ENV = {
    "RELAY_CLIENT_KEYS": "client",
    "ANTHROPIC_API_KEYS": "sk-ant",
    "GROQ_API_KEYS": "gsk-1,gsk-2",
    "UPSTREAM_ANTHROPIC_URL": "https://anthropic.test",
}
PROVIDERS = {
    "groq": {
        "format": "openai",
        "base_url": "https://groq.test/openai/v1/",
        "keys": "GROQ_API_KEYS",
        "headers": {"X-Team": "a"},
        "betas": ["tools-2024"],
    }
}
ROUTES = [
    {
        "model": "claude-haiku-*",
        "expose": ["claude-haiku-4-5"],
        "targets": [{"provider": "groq", "model": "llama-x"}, {"provider": "anthropic"}],
    },
    {"model": "claude-opus-4-5", "targets": [{"provider": "anthropic", "model": "claude-opus-4-5-20251101"}]},
]


def _settings(providers=PROVIDERS, routes=ROUTES, **env) -> Settings:
    return Settings.from_env({**ENV, "RELAY_ROUTES": json.dumps({"providers": providers, "routes": routes}), **env})


def test_without_relay_routes_each_surface_keeps_its_own_provider():
    table = Settings.from_env(ENV).routes
    assert not table.configured
    [target] = table.targets("anthropic", "claude-haiku-4-5", None)
    assert (target.provider.name, target.provider.base_url, target.model) == (
        "anthropic",
        "https://anthropic.test",
        None,
    )
    [target] = table.targets("openai", "gpt-4o", None)
    assert (target.provider.format, target.provider.base_url) == ("openai", "https://api.openai.com/v1")


def test_routes_pick_targets_in_order_and_unmatched_models_keep_the_default():
    table = _settings().routes
    targets = table.targets("anthropic", "claude-haiku-4-5-20251001", None)
    assert [(t.provider.name, t.model) for t in targets] == [("groq", "llama-x"), ("anthropic", None)]
    assert targets[0].provider.base_url == "https://groq.test/openai/v1"
    assert [t.provider.name for t in table.targets("anthropic", "claude-sonnet-4-5", None)] == ["anthropic"]
    assert table.listed_models() == [("claude-haiku-4-5", "groq"), ("claude-opus-4-5", "anthropic")]


def test_weights_share_the_first_place_and_a_session_sticks_to_its_choice():
    routes = [
        {
            "model": "*",
            "targets": [
                {"provider": "groq", "weight": 3},
                {"provider": "anthropic", "weight": 1},
                {"provider": "openai"},
            ],
        }
    ]
    table = _settings(routes=routes).routes
    firsts = Counter(table.targets("anthropic", "m", f"session-{n}")[0].provider.name for n in range(2000))
    assert 0.70 < firsts["groq"] / 2000 < 0.80 and firsts["openai"] == 0
    for n in range(20):
        session = f"s{n}"
        order = [t.provider.name for t in table.targets("anthropic", "m", session)]
        assert order == [t.provider.name for t in table.targets("anthropic", "m", session)]
        assert sorted(order) == ["anthropic", "groq", "openai"] and order[-1] == "openai"


@pytest.mark.parametrize(
    "document, words",
    [
        ("{not json", "is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"providers": {}, "routes": [], "extra": 1}', "unknown fields: extra"),
        ({"providers": {"g": {**PROVIDERS["groq"], "format": "grpc"}}}, "provider 'g': \"format\""),
        ({"providers": {"g": {**PROVIDERS["groq"], "base_url": "groq.test"}}}, '"base_url"'),
        ({"providers": {"g": {**PROVIDERS["groq"], "keys": "MISSING_KEYS"}}}, "the secret MISSING_KEYS is unset"),
        ({"providers": {"g": {**PROVIDERS["groq"], "keys": "DB"}}}, "the secret DB is unset, empty or not a secret"),
        (
            {"providers": {"g": {**PROVIDERS["groq"], "keys": "RELAY_ADMIN_TOKEN"}}},
            "relay's own setting RELAY_ADMIN_TOKEN",
        ),
        ({"providers": {"g": {**PROVIDERS["groq"], "keys": "gsk-raw-key"}}}, "must name the secret"),
        ({"routes": [{"model": "x", "targets": []}]}, 'route 1 \\(x\\): "targets" must be a non-empty list'),
        ({"routes": [{"model": "x", "targets": [{"provider": "nope"}]}]}, "route 1 \\(x\\) target 1: unknown provider"),
        ({"routes": [{"model": "x", "targets": [{"provider": "openai", "weight": -1}]}]}, "positive number"),
    ],
)
def test_bad_documents_name_the_var_and_the_problem(document, words):
    raw = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(ConfigError, match=words) as caught:
        Settings.from_env({**ENV, "RELAY_ROUTES": raw, "RELAY_ADMIN_TOKEN": "admin-secret", "DB": object()})
    assert caught.value.problem.startswith("RELAY_ROUTES ")
    assert "gsk-1" not in str(caught.value) and "admin-secret" not in str(caught.value)


class ReadingEnv(dict):
    """An env that records every name read from it, as the Worker's env view would cross to JS."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[str] = []

    def get(self, name, default=None):
        self.read.append(name)
        return super().get(name, default)


def test_settings_read_relays_own_names_and_the_secrets_providers_name_and_nothing_else():
    env = ReadingEnv(
        {
            **ENV,
            "RELAY_ROUTES": json.dumps({"providers": PROVIDERS, "routes": ROUTES}),
            "OTHER_SECRET": "x",
            "DB": object(),
        }
    )
    Settings.from_env(env)
    assert sorted(env.read) == sorted({*NAMES, "GROQ_API_KEYS"})


def test_settings_are_read_and_parsed_once_per_isolate_and_errors_every_time():
    env = ReadingEnv({**ENV, "RELAY_ROUTES": json.dumps({"providers": PROVIDERS, "routes": ROUTES})})
    services = Services(transport=ByURL({"https://anthropic.test": 200}), state=IsolateState())
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}).encode()
    first = asyncio.run(handle(_request(body=body), env, services))
    assert first.status == 200 and env.read.count("RELAY_ROUTES") == 1
    env.read.clear()
    asyncio.run(handle(_request(body=body), env, services))
    assert env.read == [] and services.state.settings == Settings.from_env(env)
    broken = ReadingEnv({**env, "RELAY_ROUTES": "{oops"})
    state = IsolateState()
    for _ in range(2):
        with pytest.raises(ConfigError, match="RELAY_ROUTES"):
            settings_for(broken, state)
    assert broken.read.count("RELAY_ROUTES") == 2 and state.settings is None


def _request(path="/v1/messages", headers=(), body=b"{}", query="beta=true"):
    return Request(
        "POST",
        path,
        query,
        Headers([("x-api-key", "client"), ("content-type", "application/json"), *headers]),
        read_body(body),
    )


def test_an_openai_target_gets_a_translated_body_and_only_the_fields_it_can_take():
    settings = _settings()
    [groq, anthropic] = settings.routes.targets("anthropic", "claude-haiku-4-5", None)
    body = json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    request = _request(
        headers=[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024, other-1"),
            ("x-team", "client's"),
            ("x-stainless-lang", "python"),
        ],
        body=body,
    )
    call = target_call.prepare(request, resolve("POST", "/v1/messages"), body, groq)
    assert call.url == "https://groq.test/openai/v1/chat/completions" and call.translated
    fields = dict(call.headers)
    assert "anthropic-version" not in fields and fields["anthropic-beta"] == "tools-2024"
    assert fields["x-team"] == "a" and fields["x-stainless-lang"] == "python"
    assert "x-api-key" not in fields and "authorization" not in fields
    assert json.loads(call.body)["model"] == "llama-x"

    same = target_call.prepare(request, resolve("POST", "/v1/messages"), body, anthropic)
    assert same.url == "https://anthropic.test/v1/messages?beta=true" and same.body is body
    assert dict(same.headers)["anthropic-beta"] == "tools-2024, other-1"  # unchanged to Anthropic


def test_count_tokens_is_not_sent_to_an_openai_format_target():
    settings = _settings()
    [groq, _] = settings.routes.targets("anthropic", "claude-haiku-4-5", None)
    with pytest.raises(target_call.CannotCount, match="cannot serve /v1/messages/count_tokens"):
        target_call.prepare(
            _request("/v1/messages/count_tokens"), resolve("POST", "/v1/messages/count_tokens"), b"{}", groq
        )


def test_count_tokens_where_only_openai_format_targets_serve_is_501_not_supported():
    routes = [{"model": "claude-haiku-*", "targets": [{"provider": "groq", "model": "llama-x"}]}]
    services = Services(transport=ByURL({}), state=IsolateState())
    env = {**ENV, "RELAY_ROUTES": json.dumps({"providers": PROVIDERS, "routes": routes})}
    body = json.dumps({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}).encode()
    answer = asyncio.run(handle(_request("/v1/messages/count_tokens", body=body), env, services))
    assert answer.status == 501 and json.loads(answer.body)["error"]["type"] == "not_supported"
    assert Headers(answer.headers).get("x-should-retry") == "false" and services.transport.urls == []


class ByURL:
    """Answers by URL prefix with a status, recording each call's URL."""

    def __init__(self, statuses):
        self.statuses = statuses
        self.urls: list[str] = []

    async def send(self, method, url, headers, body, timeout=None):
        self.urls.append(url)
        status = next(s for prefix, s in self.statuses.items() if url.startswith(prefix))
        payload = {"type": "message", "model": json.loads(body)["model"], "content": [], "usage": {}}
        return Response(
            status, [("content-type", "application/json"), ("retry-after", "0")], json.dumps(payload).encode()
        )

    async def discard(self, body):
        pass

    async def chunks(self, body):
        yield body


def test_a_failing_target_gives_way_to_the_next_after_its_own_keys():
    transport = ByURL({"https://groq.test": 503, "https://anthropic.test": 200})
    services = Services(transport=transport, state=IsolateState())
    body = json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    env = {**ENV, "RELAY_ROUTES": json.dumps({"providers": PROVIDERS, "routes": ROUTES})}
    answer = asyncio.run(handle(_request(body=body), env, services))
    assert answer.status == 200 and json.loads(answer.body)["model"] == "claude-haiku-4-5"
    assert [u.split("/")[2] for u in transport.urls] == ["groq.test", "groq.test", "anthropic.test"]
    assert answer.tap.exchange.provider == "anthropic"


def test_a_config_error_is_a_500_in_the_clients_format_naming_the_var():
    services = Services(transport=ByURL({}), state=IsolateState())
    answer = asyncio.run(handle(_request(), {**ENV, "RELAY_ROUTES": "{oops"}, services))
    assert answer.status == 500
    assert json.loads(answer.body)["error"]["message"].startswith(
        "relay is misconfigured: RELAY_ROUTES is not valid JSON"
    )


def test_a_translated_answer_relay_cannot_read_is_a_502_in_the_clients_format():
    class Garbled(ByURL):
        async def send(self, method, url, headers, body, timeout=None):
            self.urls.append(url)
            return Response(200, [("content-type", "application/json")], b"<html>gateway</html>")

    services = Services(transport=Garbled({}), state=IsolateState())
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    env = {**ENV, "RELAY_ROUTES": json.dumps({"providers": PROVIDERS, "routes": ROUTES})}
    answer = asyncio.run(handle(_request(body=body.encode()), env, services))
    assert answer.status == 502
    error = json.loads(answer.body)
    assert (
        error["type"] == "error" and "upstream groq: answered a body relay could not read" in error["error"]["message"]
    )
