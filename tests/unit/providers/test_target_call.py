"""Cloud targets (Bedrock, Vertex, Foundry) through the pipeline: what each is sent, and how
its answers (event streams, errors naming an account) reach an Anthropic client."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from devtools.fake_clouds import chunk_message, exception_message, generate_rsa_key, sigv4_problem
from devtools.fake_upstream import Seen
from relay.config import ConfigError, Settings
from relay.http import sse
from relay.http.messages import Headers, Request, Response
from relay.pipeline.app import handle
from relay.providers import bedrock, vertex
from relay.services import IsolateState, Services
from tests.fakes.streams import read_body

AWS = {"AKIAUNIT": ("unit/secret+key", None)}
ENV = {"RELAY_CLIENT_KEYS": "client", "ANTHROPIC_API_KEYS": "sk-ant", "BEDROCK_CREDENTIALS": "AKIAUNIT:unit/secret+key"}
ROUTES = {
    "providers": {"aws": {"format": "bedrock", "region": "us-west-2", "keys": "BEDROCK_CREDENTIALS"}},
    "routes": [{"model": "claude-*", "targets": [{"provider": "aws"}, {"provider": "anthropic"}]}],
}
EVENTS = [
    {"type": "message_start", "message": {"id": "m", "model": "claude-haiku-4-5", "usage": {"input_tokens": 3}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]


class Cloud:
    """Answers each request with the next of `answers`; records what it was sent."""

    def __init__(self, *answers: Response):
        self.answers = list(answers)
        self.sent: list[tuple[str, list[tuple[str, str]], bytes]] = []

    async def send(self, method, url, headers, body, timeout=None):
        self.sent.append((url, headers, body))
        return self.answers.pop(0)

    async def discard(self, body):
        pass

    async def chunks(self, body):
        for chunk in body if isinstance(body, list) else [body]:
            yield chunk


def _request(body: dict, path="/v1/messages", headers=()) -> Request:
    fields = [("x-api-key", "client"), ("content-type", "application/json"), ("anthropic-version", "2023-06-01")]
    return Request("POST", path, "", Headers([*fields, *headers]), read_body(json.dumps(body).encode()))


def _run(cloud: Cloud, body: dict, path="/v1/messages", headers=(), routes=ROUTES, env=ENV) -> Response:
    services = Services(transport=cloud, state=IsolateState())
    return asyncio.run(handle(_request(body, path, headers), {**env, "RELAY_ROUTES": json.dumps(routes)}, services))


async def _text(body) -> bytes:
    return b"".join([chunk async for chunk in body])


MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_bedrock_gets_a_signed_invoke_with_version_and_betas_in_the_body():
    answer = Response(200, [("content-type", "application/json")], json.dumps({"type": "message"}).encode())
    cloud = Cloud(answer)
    betas = "interleaved-thinking-2025-05-14,claude-code-20250219"
    client_fields = [("x-amz-security-token", "client-chosen"), ("x-amz-date", "20000101T000000Z")]
    reply = _run(cloud, MESSAGE, headers=[("anthropic-beta", betas), ("x-trace", "t1"), *client_fields])
    assert reply.status == 200
    [(url, headers, body)] = cloud.sent
    assert (
        url == "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"
    )
    sent = json.loads(body)
    assert sent["anthropic_version"] == "bedrock-2023-05-31" and "model" not in sent and "stream" not in sent
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]  # Bedrock refuses the other
    fields = dict(headers)
    assert not {"anthropic-version", "anthropic-beta", "x-api-key"} & set(fields) and fields["x-trace"] == "t1"
    assert [n for n, _ in headers].count("x-amz-date") == 1 and "x-amz-security-token" not in fields
    path = url.split(".com", 1)[1]
    seen = Seen("POST", path, [("host", "bedrock-runtime.us-west-2.amazonaws.com"), *headers], body)
    assert sigv4_problem(AWS, seen) is None


def test_a_bedrock_event_stream_becomes_anthropic_sse_event_by_event():
    stream = b"".join(chunk_message(e) for e in EVENTS)
    pieces = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    cloud = Cloud(Response(200, [("content-type", bedrock.STREAM_TYPE)], pieces))
    reply = _run(cloud, {**MESSAGE, "stream": True})
    assert cloud.sent[0][0].endswith("/invoke-with-response-stream")
    assert ("accept", bedrock.STREAM_TYPE) in cloud.sent[0][1]
    assert Headers(reply.headers).get("content-type").startswith("text/event-stream")
    text = asyncio.run(_text(reply.body)).decode()
    frames = text.strip().split("\n\n")
    assert [f.split("\n")[0] for f in frames] == [f"event: {e['type']}" for e in EVENTS]
    assert json.loads(frames[2].split("data: ", 1)[1]) == EVENTS[2]


def test_translator_output_follows_each_message_not_the_stream_end():
    translator = bedrock.EventStreamToSSE("aws")
    first = chunk_message(EVENTS[0])
    assert translator.feed(first[:-1]) == b""
    assert translator.feed(first[-1:]).startswith(b"event: message_start\n")


def test_an_exception_in_the_stream_is_an_error_event_of_its_type_without_the_account():
    stream = chunk_message(EVENTS[0]) + exception_message("throttlingException", "slow down, arn:aws:iam::123456789012")
    cloud = Cloud(Response(200, [("content-type", bedrock.STREAM_TYPE)], [stream, chunk_message(EVENTS[1])]))
    text = asyncio.run(_text(_run(cloud, {**MESSAGE, "stream": True}).body)).decode()
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n") and "123456789012" not in text
    assert json.loads(last.split("data: ", 1)[1])["error"] == {
        "type": "rate_limit_error",
        "message": "bedrock provider aws answered throttlingException mid-stream",
    }
    assert "content_block_start" not in text


def test_a_stream_that_stops_early_ends_with_an_error_event():
    stream = b"".join(chunk_message(e) for e in EVENTS[:3])
    cloud = Cloud(Response(200, [("content-type", bedrock.STREAM_TYPE)], [stream[:-2]]))
    text = asyncio.run(_text(_run(cloud, {**MESSAGE, "stream": True}).body)).decode()
    assert text.count("event: ") == 3 and text.strip().split("\n\n")[-1].startswith("event: error")


def test_a_bedrock_error_keeps_its_type_and_names_the_provider_not_the_account():
    error = Response(
        400,
        [("content-type", "application/json"), ("x-amzn-errortype", "ValidationException:http://internal.amazon.com/")],
        b'{"message":"arn:aws:bedrock:us-west-2:123456789012:model is not allowed"}',
    )
    routes = {**ROUTES, "routes": [{"model": "claude-*", "targets": [{"provider": "aws"}]}]}
    reply = _run(Cloud(error), MESSAGE, routes=routes)
    assert reply.status == 400 and b"123456789012" not in reply.body
    assert json.loads(reply.body)["error"] == {
        "type": "invalid_request_error",
        "message": "bedrock provider aws answered 400 ValidationException",
    }
    assert Headers(reply.headers).get("x-should-retry") == "false"


def test_a_throttled_bedrock_target_gives_way_to_the_anthropic_api():
    throttled = Response(429, [("x-amzn-errortype", "ThrottlingException"), ("retry-after", "0")], b"{}")
    served = Response(200, [("content-type", "application/json")], b'{"type":"message","model":"claude-haiku-4-5"}')
    cloud = Cloud(throttled, served)
    reply = _run(cloud, MESSAGE)
    assert reply.status == 200 and reply.tap.exchange.provider == "anthropic"
    assert [url.split("/")[2] for url, _, _ in cloud.sent] == [
        "bedrock-runtime.us-west-2.amazonaws.com",
        "api.anthropic.com",
    ]


def test_count_tokens_goes_to_bedrocks_count_tokens_for_a_foundation_model():
    counted = Response(200, [("content-type", "application/json")], b'{"inputTokens":42}')
    cloud = Cloud(counted)
    reply = _run(
        cloud, MESSAGE, path="/v1/messages/count_tokens", headers=[("anthropic-beta", "context-1m-2025-08-07")]
    )
    assert reply.status == 200 and json.loads(reply.body) == {"input_tokens": 42}
    [(url, headers, body)] = cloud.sent
    assert url.endswith("/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/count-tokens")
    invoke = json.loads(base64.b64decode(json.loads(body)["input"]["invokeModel"]["body"]))
    assert invoke == {
        "max_tokens": 5,
        "messages": MESSAGE["messages"],
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["context-1m-2025-08-07"],
    }
    path = url.split(".com", 1)[1]
    assert sigv4_problem(AWS, Seen("POST", path, [("host", url.split("/")[2]), *headers], body)) is None


def test_count_tokens_where_no_target_can_count_is_501_not_supported():
    profile = {"aws": {**ROUTES["providers"]["aws"], "models": {"claude-haiku-4-5": "us.anthropic.claude-haiku-4-5"}}}
    routes = {"providers": profile, "routes": [{"model": "claude-*", "targets": [{"provider": "aws"}]}]}
    reply = _run(Cloud(), MESSAGE, path="/v1/messages/count_tokens", routes=routes)
    assert reply.status == 501 and json.loads(reply.body)["error"]["type"] == "not_supported"
    assert Headers(reply.headers).get("x-should-retry") == "false"
    counted = Response(200, [("content-type", "application/json")], b'{"input_tokens":3}')
    cloud = Cloud(counted)
    with_fallback = {
        **routes,
        "routes": [{"model": "claude-*", "targets": [{"provider": "aws"}, {"provider": "anthropic"}]}],
    }
    assert _run(cloud, MESSAGE, path="/v1/messages/count_tokens", routes=with_fallback).status == 200
    assert cloud.sent[0][0] == "https://api.anthropic.com/v1/messages/count_tokens"


def test_model_ids_and_paths_of_each_cloud():
    assert bedrock.model_id({}, "claude-sonnet-4-5") == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert bedrock.model_id(
        {"claude-sonnet-4-5": "arn:aws:bedrock:x:1:inference-profile/p"}, "claude-sonnet-4-5"
    ).startswith("arn:")
    assert bedrock.path("arn:aws:bedrock:x:1:inference-profile/p", True) == (
        "/model/arn%3Aaws%3Abedrock%3Ax%3A1%3Ainference-profile%2Fp/invoke-with-response-stream"
    )
    assert vertex.model_id({}, "claude-haiku-4-5") == "claude-haiku-4-5@20251001"
    assert vertex.model_id({}, "claude-sonnet-4-5-20250929") == "claude-sonnet-4-5@20250929"
    assert vertex.path("p", "us-east5", "claude-haiku-4-5@20251001", False) == (
        "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    assert vertex.default_base_url("global") == "https://aiplatform.googleapis.com"


def test_foundry_is_the_anthropic_api_with_its_api_key_and_errors_without_the_account():
    routes = {
        "providers": {
            "azure": {
                "format": "foundry",
                "base_url": "https://r.services.ai.azure.com/anthropic",
                "keys": "FOUNDRY_API_KEYS",
            }
        },
        "routes": [{"model": "claude-*", "targets": [{"provider": "azure"}]}],
    }
    env = {**ENV, "FOUNDRY_API_KEYS": "foundry-key-1"}
    error = Response(
        429,
        [("content-type", "application/json"), ("retry-after", "0")],
        b'{"type":"error","error":{"type":"rate_limit_error","message":"subscription 0000-1111 over quota"}}',
    )
    ok = Response(200, [("content-type", "application/json")], b'{"type":"message"}')
    cloud = Cloud(ok, error)
    assert _run(cloud, MESSAGE, routes=routes, env=env, headers=[("api-key", "client-chosen")]).status == 200
    url, headers, body = cloud.sent[0]
    assert url == "https://r.services.ai.azure.com/anthropic/v1/messages" and ("api-key", "foundry-key-1") in headers
    assert ("api-key", "client-chosen") not in headers
    assert "x-api-key" not in dict(headers) and json.loads(body) == MESSAGE
    reply = _run(cloud, MESSAGE, routes=routes, env=env)
    assert reply.status == 429 and b"0000-1111" not in reply.body
    assert json.loads(reply.body)["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    "provider, env, words",
    [
        ({"format": "bedrock", "keys": "BEDROCK_CREDENTIALS"}, {}, '"region" must name its region'),
        ({"format": "bedrock", "region": "us-east-1", "keys": "BAD"}, {"BAD": "just-a-key"}, "ACCESS_KEY_ID"),
        ({"format": "vertex", "region": "us-east5", "keys": "SA"}, {"SA": '{"not": "a key"}'}, "service-account key"),
        ({"format": "foundry", "keys": "FOUNDRY_API_KEYS"}, {"FOUNDRY_API_KEYS": "k"}, '"base_url"'),
        ({"format": "openai", "base_url": "https://x.test", "keys": "K", "region": "us-east-1"}, {"K": "k"}, "region"),
    ],
)
def test_a_cloud_provider_without_what_it_needs_is_a_config_error_naming_no_secret(provider, env, words):
    routes = {"providers": {"c": provider}, "routes": []}
    with pytest.raises(ConfigError, match=words) as caught:
        Settings.from_env({**ENV, **env, "RELAY_ROUTES": json.dumps(routes)})
    assert "unit/secret+key" not in str(caught.value) and "just-a-key" not in str(caught.value)


def test_thinking_blocks_without_a_signature_are_not_sent_to_an_anthropic_api():
    """relay makes them from an OpenAI-format model's reasoning; a later turn that falls back
    to an Anthropic-API target would be refused for them."""
    history = {
        **MESSAGE,
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "from gpt", "signature": ""},
                    {"type": "thinking", "thinking": "from claude", "signature": "sig-1"},
                    {"type": "text", "text": "hello"},
                ],
            },
            {"role": "user", "content": "again"},
        ],
    }
    answer = Response(200, [("content-type", "application/json")], b'{"type":"message"}')
    for routes in (ROUTES, {**ROUTES, "routes": []}):  # to Bedrock, and to the Anthropic API itself
        cloud = Cloud(answer)
        assert _run(cloud, history, routes=routes).status == 200
        sent = json.loads(cloud.sent[0][2])["messages"][1]["content"]
        assert [b.get("signature") for b in sent] == ["sig-1", None]


def _openai_request(body: dict) -> Request:
    fields = [("authorization", "Bearer client"), ("content-type", "application/json")]
    return Request("POST", "/openai/v1/chat/completions", "", Headers(fields), read_body(json.dumps(body).encode()))


def test_an_openai_client_reaches_claude_on_bedrock_streamed_and_not():
    chat = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    stream = b"".join(chunk_message(e) for e in EVENTS)
    cloud = Cloud(
        Response(200, [("content-type", "application/json")], json.dumps(message).encode()),
        Response(200, [("content-type", bedrock.STREAM_TYPE)], [stream[:50], stream[50:]]),
    )
    env = {**ENV, "RELAY_ROUTES": json.dumps(ROUTES)}
    services = Services(transport=cloud, state=IsolateState())
    plain = asyncio.run(handle(_openai_request(chat), env, services))
    completion = json.loads(plain.body)
    assert completion["choices"][0]["message"]["content"] == "hello" and completion["usage"]["prompt_tokens"] == 3
    sent = json.loads(cloud.sent[0][2])
    assert sent["anthropic_version"] == "bedrock-2023-05-31" and "model" not in sent
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    live = asyncio.run(
        handle(_openai_request({**chat, "stream": True, "stream_options": {"include_usage": True}}), env, services)
    )
    assert cloud.sent[1][0].endswith("/invoke-with-response-stream")
    chunks = [json.loads(d) for e, d in sse.Frames().feed(asyncio.run(_text(live.body))) if d != b"[DONE]"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "hi"
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_an_openai_client_reaches_claude_on_foundry_translated_both_ways():
    routes = {
        "providers": {
            "azure": {"format": "foundry", "base_url": "https://r.test/anthropic", "keys": "FOUNDRY_API_KEYS"}
        },
        "routes": [{"model": "claude-*", "targets": [{"provider": "azure"}]}],
    }
    message = {"type": "message", "model": "claude-x", "content": [{"type": "text", "text": "hey"}], "usage": {}}
    cloud = Cloud(Response(200, [("content-type", "application/json")], json.dumps(message).encode()))
    env = {**ENV, "FOUNDRY_API_KEYS": "k", "RELAY_ROUTES": json.dumps(routes)}
    chat = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}
    answer = asyncio.run(handle(_openai_request(chat), env, Services(transport=cloud, state=IsolateState())))
    assert json.loads(answer.body)["choices"][0]["message"]["content"] == "hey"
    assert cloud.sent[0][0] == "https://r.test/anthropic/v1/messages" and ("api-key", "k") in cloud.sent[0][1]


VERTEX_ROUTES = {
    "providers": {"gcp": {"format": "vertex", "region": "europe-west1", "keys": "VERTEX_SERVICE_ACCOUNT"}},
    "routes": [{"model": "claude-*", "targets": [{"provider": "gcp"}, {"provider": "anthropic"}]}],
}


@pytest.fixture(scope="module")
def service_account():
    return json.dumps(
        {
            "project_id": "proj-1",
            "client_email": "sa@proj-1.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.test/token",
            "private_key": generate_rsa_key(),
        }
    )


def test_vertex_gets_rawpredict_with_its_version_and_an_exchanged_token(service_account):
    token = Response(200, [("content-type", "application/json")], b'{"access_token":"ya29.unit","expires_in":3600}')
    ok = Response(200, [("content-type", "application/json")], b'{"type":"message"}')
    cloud = Cloud(token, ok, ok)
    env = {**ENV, "VERTEX_SERVICE_ACCOUNT": service_account, "RELAY_ROUTES": json.dumps(VERTEX_ROUTES)}
    services = Services(transport=cloud, state=IsolateState())
    for _ in range(2):  # the token is exchanged once, then kept
        request = _request(MESSAGE, headers=[("anthropic-beta", "context-1m-2025-08-07"), ("x-goog-user-project", "x")])
        assert asyncio.run(handle(request, env, services)).status == 200
    (token_url, _, form), (url, headers, body), _ = cloud.sent
    assert token_url == "https://oauth2.test/token" and b"grant_type=urn%3Aietf" in form
    assert url == (
        "https://europe-west1-aiplatform.googleapis.com/v1/projects/proj-1/locations/europe-west1"
        "/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    fields = dict(headers)
    assert fields["authorization"] == "Bearer ya29.unit" and fields["anthropic-beta"] == "context-1m-2025-08-07"
    assert "anthropic-version" not in fields and "x-goog-user-project" not in fields
    sent = json.loads(body)
    assert sent["anthropic_version"] == "vertex-2023-10-16" and "model" not in sent


def test_a_vertex_token_that_cannot_be_had_gives_way_to_the_next_target(service_account):
    refused = Response(400, [("content-type", "application/json")], b'{"error":"invalid_grant"}')
    ok = Response(200, [("content-type", "application/json")], b'{"type":"message"}')
    cloud = Cloud(refused, ok)
    env = {**ENV, "VERTEX_SERVICE_ACCOUNT": service_account, "RELAY_ROUTES": json.dumps(VERTEX_ROUTES)}
    reply = asyncio.run(handle(_request(MESSAGE), env, Services(transport=cloud, state=IsolateState())))
    assert reply.status == 200 and reply.tap.exchange.provider == "anthropic"
    alone = {**VERTEX_ROUTES, "routes": [{"model": "claude-*", "targets": [{"provider": "gcp"}]}]}
    env = {**env, "RELAY_ROUTES": json.dumps(alone)}
    reply = asyncio.run(handle(_request(MESSAGE), env, Services(transport=Cloud(refused), state=IsolateState())))
    assert reply.status == 502 and "access token for vertex provider gcp" in json.loads(reply.body)["error"]["message"]
