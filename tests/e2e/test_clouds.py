"""Claude on Bedrock, Vertex AI and Foundry as route targets, on workerd, driven by the
anthropic SDK: tool-use sessions streamed and not, Bedrock's event stream re-emitted as
SSE, a mid-stream throttle as an `error` event, failover across regions and clouds to the
Anthropic API, cache usage on every path, and no credential anywhere it should not be.

The fake clouds (devtools/fake_clouds.py) check what the real ones would: the SigV4
signature, the service account's JWT and access token, Foundry's api-key.
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from devtools.fake_clouds import FakeClouds, generate_rsa_key
from devtools.fake_upstream import GATE_TIMEOUT_S, REPLY_TEXT
from devtools.local_worker import LocalWorker
from relay.providers import bedrock
from relay.usage import pricing
from relay.usage.meter import COUNTS
from tests.clients import run_claude

from .conftest import CLIENT_KEY, ISSUED
from .conftest import session_rows as rows

AWS_KEY_ID = "AKIAFAKEE2E00000001"
AWS_SECRET = "fake/e2e+aws+secret+access+key+0001"
AWS_SESSION = "fake-e2e-aws-session-token-0001"
FOUNDRY_KEY = "foundry-fake-e2e-key-0001"
ANT_KEY = "sk-ant-clouds-key-0001"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TOOLS_ON = {"x-fake-tool-calls": "on"}
# The model each cloud is reached with, and the provider that serves it.
ON = {
    "bedrock": ("claude-sonnet-4-5", "aws-east"),
    "vertex": ("claude-haiku-4-5", "gcp"),
    "foundry": ("claude-opus-4-5", "azure"),
}
CHAIN = "claude-opus-4-1"
UNCOUNTED = "claude-3-5-haiku-latest"  # on Bedrock alone
CLI_TIMEOUT = 180
REGIONAL_PRICE = {"input": 3.3, "output": 16.5}  # Bedrock's regional rate, above list price


@pytest.fixture(scope="module")
def private_key():
    pem = generate_rsa_key()
    ISSUED.extend(line for line in pem.splitlines()[1:-1])  # every line of the key's body
    return pem


@pytest.fixture(scope="module")
def clouds(private_key):
    ISSUED.extend([AWS_SECRET, AWS_SESSION, FOUNDRY_KEY, ANT_KEY])
    with FakeClouds({AWS_KEY_ID: (AWS_SECRET, AWS_SESSION)}, private_key, (FOUNDRY_KEY,)) as fake:
        yield fake
        ISSUED.extend(fake.tokens)  # the access tokens the fake token endpoint issued


@pytest.fixture(scope="module")
def worker(clouds, anthropic_upstream, private_key):
    routes = {
        "providers": {
            "aws-east": {
                "format": "bedrock",
                "region": "us-east-1",
                "base_url": clouds.url,
                "keys": "BEDROCK_CREDENTIALS",
            },
            "aws-west": {
                "format": "bedrock",
                "region": "us-west-2",
                "base_url": clouds.url,
                "keys": "BEDROCK_CREDENTIALS",
                "models": {UNCOUNTED: "us.anthropic.claude-3-5-haiku-20241022-v1:0"},  # a profile
            },
            "gcp": {"format": "vertex", "region": "us-east5", "base_url": clouds.url, "keys": "VERTEX_SERVICE_ACCOUNT"},
            "azure": {"format": "foundry", "base_url": clouds.url + "/anthropic", "keys": "FOUNDRY_API_KEYS"},
            "ant": {"format": "anthropic", "base_url": anthropic_upstream.url, "keys": "ANT_API_KEYS"},
        },
        "routes": [
            {"model": "claude-sonnet-4-5", "targets": [{"provider": "aws-east"}, {"provider": "ant"}]},
            {"model": "claude-haiku-4-5", "targets": [{"provider": "gcp"}, {"provider": "ant"}]},
            {"model": "claude-opus-4-5", "targets": [{"provider": "azure"}]},
            {"model": UNCOUNTED, "targets": [{"provider": "aws-west"}]},
            {
                "model": CHAIN,
                "targets": [
                    {"provider": "aws-east"},
                    {"provider": "aws-west"},
                    {"provider": "gcp"},
                    {"provider": "ant"},
                ],
            },
        ],
    }
    with LocalWorker(
        {
            "RELAY_CLIENT_KEYS": CLIENT_KEY,
            "BEDROCK_CREDENTIALS": f"{AWS_KEY_ID}:{AWS_SECRET}:{AWS_SESSION}",
            "VERTEX_SERVICE_ACCOUNT": clouds.service_account_json(),
            "FOUNDRY_API_KEYS": FOUNDRY_KEY,
            "ANT_API_KEYS": ANT_KEY,
            "RELAY_ROUTES": json.dumps(routes),
            "RELAY_PRICES": json.dumps({"aws-east/claude-sonnet-4*": REGIONAL_PRICE}),
        }
    ) as running:
        yield running
        log = running.log()
        found = json.dumps(running.query("SELECT * FROM usage"))
    secrets = [AWS_SECRET, AWS_SESSION, FOUNDRY_KEY, ANT_KEY, *clouds.tokens, *private_key.splitlines()[1:-1]]
    for place, text in (("the Worker's log", log), ("D1", found)):
        assert not [n for n, s in enumerate(secrets) if s in text], f"a credential appears in {place}"


@pytest.fixture
def client(worker, tag):
    return anthropic.Anthropic(
        base_url=worker.url,
        api_key=CLIENT_KEY,
        max_retries=0,
        default_headers={"x-test-tag": tag, "x-claude-code-session-id": tag},
    )


def _ask(client, model, messages, stream, **extra):
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    kwargs = dict(model=model, max_tokens=256, system=system, tools=[WEATHER_TOOL], messages=messages, **extra)
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("cloud", ["bedrock", "vertex", "foundry"])
def test_a_tool_use_session_on_each_cloud(client, worker, clouds, anthropic_upstream, tag, cloud, stream):
    model, provider = ON[cloud]
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    headers = {**TOOLS_ON, "x-fake-cache-read": "7", "x-fake-cache-write": "5"}
    first = _ask(client, model, question, stream, extra_headers=headers)
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "fake"})
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4C and sunny"}]}
    turns = [
        *question,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        result,
    ]
    second = _ask(client, model, turns, stream, extra_headers=headers)
    assert second.stop_reason == "end_turn" and second.content[0].text == "Tool said: 4C and sunny"
    assert second.usage.cache_read_input_tokens == 7 and second.usage.cache_creation_input_tokens == 5

    seen = clouds.requests(tag, cloud)
    assert len(seen) == 2 and not anthropic_upstream.requests(tag)
    body = seen[1].json()
    assert body["messages"][1]["content"][0]["id"] == call.id
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}  # the client's marker, as it sent it
    if cloud == "bedrock":
        assert seen[0].region == "us-east-1" and seen[0].model == "anthropic.claude-sonnet-4-5-20250929-v1:0"
        assert seen[0].path.endswith("/invoke-with-response-stream" if stream else "/invoke")
    elif cloud == "vertex":
        assert seen[0].model == "claude-haiku-4-5@20251001"
        assert seen[0].path.startswith("/v1/projects/relay-test/locations/us-east5/publishers/anthropic/models/")
    else:
        assert seen[0].header("api-key") == FOUNDRY_KEY and body["model"] == model
    for row in rows(worker, tag, 2):
        assert (row["provider"], row["model_requested"], row["status"], row["error_type"]) == (
            provider,
            model,
            200,
            None,
        )
        assert row["model_served"].startswith(model) and row["stream"] == int(stream)  # Bedrock's is dated
        assert (row["cache_read_tokens"], row["cache_creation_tokens"], row["output_tokens"]) == (7, 5, 12)
        counts = {name: row[name] for name in COUNTS}
        rates = pricing.parse_overrides(json.dumps({"x": REGIONAL_PRICE}))[0][1] if cloud == "bedrock" else None
        price = rates or pricing.price_of(row["model_served"])
        assert row["cost_nanos"] == pricing.cost(price, counts)[0]  # priced for the provider, exactly


def test_bedrocks_event_stream_reaches_the_client_as_sse_event_by_event(worker, clouds, tag):
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "x-test-tag": tag, "x-fake-events": "5"}
    body = {
        "model": ON["bedrock"][0],
        "max_tokens": 16,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", worker.url + "/v1/messages", headers=headers, json=body, timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_raw()).decode()
    frames = raw.strip().split("\n\n")
    names = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(
        json.loads(f.split("data: ", 1)[1])["delta"].get("text", "") for f in frames if "content_block_delta" in f
    )
    assert text == REPLY_TEXT


def test_each_event_reaches_the_client_before_bedrock_sends_the_next(worker, clouds, tag):
    headers = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", "x-fake-gate": tag}
    body = {
        "model": ON["bedrock"][0],
        "max_tokens": 16,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", worker.url + "/v1/messages", headers=headers, json=body, timeout=60) as response:
        lines = response.iter_lines()
        started = time.monotonic()
        assert next(lines) == "event: message_start"  # while the fake holds the rest back
        assert time.monotonic() - started < GATE_TIMEOUT_S / 2
        clouds.release(tag)
        assert "event: message_stop" in list(lines)


def test_a_mid_stream_throttle_arrives_as_an_error_event_without_the_account(worker, client, tag):
    headers = {"x-fake-bedrock-scenario": "midstream-throttle"}
    ask = dict(model=ON["bedrock"][0], max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(**ask, extra_headers=headers) as events,
    ):
        for _ in events:  # the SDK raises the error event
            pass
    assert caught.value.body["error"] == {
        "type": "rate_limit_error",
        "message": "bedrock provider aws-east answered throttlingException mid-stream",
    }
    [row] = rows(worker, tag, 1)
    assert (row["status"], row["error_type"], row["provider"]) == (200, "rate_limit_error", "aws-east")


def test_a_throttled_region_fails_over_to_the_next_region_then_vertex_then_the_anthropic_api(
    client, worker, clouds, anthropic_upstream, tag
):
    ask = dict(model=CHAIN, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    served_by_vertex = client.messages.create(**ask, extra_headers={"x-fake-bedrock-scenario": "status-429"})
    assert served_by_vertex.content[0].text == REPLY_TEXT
    everywhere = {"x-fake-bedrock-scenario": "status-429", "x-fake-vertex-scenario": "status-429"}
    served_by_anthropic = client.messages.create(**ask, extra_headers=everywhere)
    assert served_by_anthropic.content[0].text == REPLY_TEXT

    tried = [(s.cloud, s.region) for s in clouds.requests(tag) if s.cloud != "google-token"]
    assert tried == [("bedrock", "us-east-1"), ("bedrock", "us-west-2"), ("vertex", None)] * 2
    [served] = anthropic_upstream.requests(tag)
    assert served.json()["model"] == CHAIN and served.header("x-api-key") == ANT_KEY
    vertex_row, anthropic_row = rows(worker, tag, 2)
    assert (vertex_row["provider"], vertex_row["model_served"], vertex_row["status"]) == ("gcp", CHAIN, 200)
    assert (anthropic_row["provider"], anthropic_row["model_served"]) == ("ant", CHAIN)
    assert anthropic_row["upstream_key_id"].startswith("ant-")


@pytest.mark.parametrize("cloud", ["bedrock", "vertex", "foundry"])
def test_a_cloud_error_names_the_provider_not_the_account(client, worker, cloud):
    model, _ = ON[cloud]
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=model,
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={f"x-fake-{c}-scenario": "status-400" for c in ("bedrock", "vertex", "foundry")},
        )
    error = caught.value.body["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(f"{cloud} provider ")
    accounts = {"bedrock": "123456789012", "vertex": "987654321098", "foundry": "00000000-fake"}
    assert not any(account in json.dumps(caught.value.body) for account in accounts.values())
    deadline = time.monotonic() + 10
    while accounts[cloud] not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert accounts[cloud] in worker.log()  # the cloud's own message went to the log only


def test_count_tokens_is_bedrocks_count_or_501_not_supported_where_no_target_can_count(client, clouds, tag):
    counted = client.messages.count_tokens(model=ON["bedrock"][0], messages=[{"role": "user", "content": "hi"}])
    [seen] = clouds.requests(tag, "bedrock")
    assert seen.path.endswith("/count-tokens") and counted.input_tokens > 0  # CountTokens, signed
    with pytest.raises(anthropic.APIStatusError) as caught:  # an inference profile: Bedrock cannot count
        client.messages.count_tokens(model=UNCOUNTED, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 501 and caught.value.body["error"]["type"] == "not_supported"
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(clouds.requests(tag, "bedrock")) == 1


@pytest.mark.parametrize("cloud", ["bedrock", "vertex", "foundry"])
def test_claude_code_gets_its_answer_through_each_cloud(worker, clouds, anthropic_upstream, cloud):
    model = ON[cloud][0]
    before, fallback = len(clouds.requests(cloud=cloud)), anthropic_upstream.count
    done = run_claude(worker.url, api_key=CLIENT_KEY, args=("--model", model), timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert REPLY_TEXT in done.stdout
    asked = clouds.requests(cloud=cloud)[before:]
    assert asked and anthropic_upstream.count == fallback  # the cloud served it all
    body = asked[-1].json()
    if cloud == "bedrock":
        assert all(seen.model == "anthropic.claude-sonnet-4-5-20250929-v1:0" for seen in asked)
        assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body
        assert set(body.get("anthropic_beta", [])) <= bedrock.BETAS  # Claude Code's others were dropped
    elif cloud == "vertex":
        assert all(seen.model == "claude-haiku-4-5@20251001" for seen in asked)
        assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    else:
        assert body["model"] == model and asked[-1].header("api-key") == FOUNDRY_KEY


@pytest.mark.parametrize("cloud", ["bedrock", "vertex"])
def test_the_openai_sdk_reaches_claude_on_a_cloud(worker, clouds, tag, cloud):
    client = openai.OpenAI(
        base_url=worker.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
    )
    model = ON[cloud][0]
    ask = dict(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    completion = client.chat.completions.create(**ask)
    assert completion.choices[0].message.content == REPLY_TEXT and completion.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    assert chunks[-1].usage.completion_tokens == 12
    plain, streamed = clouds.requests(tag, cloud)
    assert plain.json()["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert streamed.path.endswith("/invoke-with-response-stream" if cloud == "bedrock" else ":streamRawPredict")


def test_claude_code_runs_a_tool_turn_through_bedrock(worker, clouds, tag):
    """The fake model calls Claude Code's first tool; Claude Code answers with its result
    (whatever the tool made of the fake arguments) and the model's last turn quotes it."""
    headers = {"x-test-tag": tag, **TOOLS_ON}
    done = run_claude(
        worker.url, api_key=CLIENT_KEY, headers=headers, args=("--model", ON["bedrock"][0]), timeout=CLI_TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    asked = clouds.requests(tag, "bedrock")
    assert len(asked) >= 2 and "Tool said:" in done.stdout
    [call] = [
        b
        for m in asked[-1].json()["messages"]
        if m["role"] == "assistant"
        for b in m["content"]
        if b["type"] == "tool_use"
    ]
    [result] = [b for b in asked[-1].json()["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert result["tool_use_id"] == call["id"] == "toolu_fake_1"
