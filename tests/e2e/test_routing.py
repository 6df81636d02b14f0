"""Routing on workerd: models to providers from RELAY_ROUTES, fallback between targets, and
Anthropic <-> OpenAI translation driven by the real SDKs and the Claude Code CLI.

Runs its own Worker, whose routes name the session's two fakes as providers "oai" (OpenAI
format) and "ant" (Anthropic format), with keys of their own. Assertions name keys by
provider, never by value.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest

from devtools.fake_upstream import REPLY_TEXT
from devtools.local_worker import LocalWorker
from tests.clients import run_claude

from .conftest import CLIENT_KEY
from .test_usage import rows

OAI_KEYS = ("sk-oai-route-key-0001", "sk-oai-route-key-0002")
ANT_KEY = "sk-ant-route-key-0001"
HAIKU = "claude-haiku-4-5"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TOOLS_ON = {"x-fake-tool-calls": "on"}
CLI_TIMEOUT = 180


@pytest.fixture(scope="module")
def oai(openai_upstream):
    return openai_upstream


@pytest.fixture(scope="module")
def ant(anthropic_upstream):
    return anthropic_upstream


@pytest.fixture(scope="module")
def routed(oai, ant):
    routes = {
        "providers": {
            "oai": {
                "format": "openai",
                "base_url": oai.url,
                "keys": "OAI_API_KEYS",
                "headers": {"x-provider-team": "relay"},
            },
            "ant": {"format": "anthropic", "base_url": ant.url, "keys": "ANT_API_KEYS"},
        },
        "routes": [
            {
                "model": "claude-haiku-*",
                "expose": [HAIKU],
                "targets": [{"provider": "oai", "model": "gpt-fake-mini"}, {"provider": "ant", "model": HAIKU}],
            },
            {"model": "claude-sonnet-4-5", "targets": [{"provider": "ant"}]},
            {"model": "claude-opus-*", "targets": [{"provider": "oai", "model": "gpt-fake-large"}]},
        ],
    }
    with LocalWorker(
        {
            "RELAY_CLIENT_KEYS": CLIENT_KEY,
            "OAI_API_KEYS": ",".join(OAI_KEYS),
            "ANT_API_KEYS": ANT_KEY,
            "RELAY_ROUTES": json.dumps(routes),
        }
    ) as worker:
        yield worker
        log = worker.log()
        found = json.dumps(worker.query("SELECT * FROM usage"))
    for place, text in (("the Worker's log", log), ("D1", found)):
        assert not [k for k in (*OAI_KEYS, ANT_KEY, CLIENT_KEY) if k in text], f"a key appears in {place}"


@pytest.fixture
def client(routed, tag):
    return anthropic.Anthropic(
        base_url=routed.url,
        api_key=CLIENT_KEY,
        max_retries=0,
        default_headers={"x-test-tag": tag, "x-claude-code-session-id": tag},
    )


@pytest.fixture
def oai_client(routed, tag):
    return openai.OpenAI(
        base_url=routed.url + "/openai/v1",
        api_key=CLIENT_KEY,
        max_retries=0,
        default_headers={"x-test-tag": tag, "x-claude-code-session-id": tag},
    )


def _tool_turns(client, stream: bool) -> tuple[list, list]:
    """A two-turn tool exchange: the model calls get_weather, then answers from its result."""
    question = [{"role": "user", "content": "Weather in Oslo?"}]
    answers = []

    def ask(messages):
        kwargs = dict(model=HAIKU, max_tokens=256, tools=[WEATHER_TOOL], messages=messages, extra_headers=TOOLS_ON)
        if not stream:
            return client.messages.create(**kwargs)
        with client.messages.stream(**kwargs) as events:
            return events.get_final_message()

    first = ask(question)
    answers.append(first)
    [call] = [block for block in first.content if block.type == "tool_use"]
    second = ask(
        question
        + [
            {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4C and sunny"}]},
        ]
    )
    answers.append(second)
    return answers, question


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_sdk_completes_a_tool_exchange_on_an_openai_format_model(client, routed, oai, ant, tag, stream):
    (first, second), _ = _tool_turns(client, stream)

    assert first.stop_reason == "tool_use" and first.model == "gpt-fake-mini"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert (call.name, call.input) == ("get_weather", {"city": "fake"})
    assert second.stop_reason == "end_turn"
    assert second.content[0].text == "Tool said: 4C and sunny"

    seen = oai.requests(tag)
    assert not ant.requests(tag) and len(seen) == 2
    for request in seen:
        assert request.path == "/v1/chat/completions"
        assert request.header("authorization") in {f"Bearer {k}" for k in OAI_KEYS}
        assert request.header("anthropic-version") is None and request.header("x-api-key") is None
        assert request.header("x-provider-team") == "relay"
    body = seen[1].json()
    assert body["model"] == "gpt-fake-mini" and body["tools"][0]["function"]["name"] == "get_weather"
    assert body["messages"][1]["tool_calls"][0]["id"] == call.id
    assert body["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "4C and sunny"}
    if stream:
        assert body["stream_options"] == {"include_usage": True}

    for row, answer, request in zip(rows(routed, tag, 2), (first, second), seen):
        assert (row["provider"], row["model_requested"], row["model_served"]) == ("oai", HAIKU, "gpt-fake-mini")
        assert row["upstream_key_id"].startswith("oai-") and row["status"] == 200 and row["error_type"] is None
        assert row["input_tokens"] == answer.usage.input_tokens == request.usage["prompt_tokens"]
        assert row["output_tokens"] == answer.usage.output_tokens == 12
        assert row["stream"] == int(stream)


def test_claude_code_gets_its_answer_from_the_openai_format_provider(routed, oai):
    before = oai.count
    done = run_claude(routed.url, api_key=CLIENT_KEY, args=("--model", HAIKU), timeout=CLI_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert REPLY_TEXT in done.stdout
    asked = oai.requests()[before:]
    assert asked and all(seen.json()["model"] == "gpt-fake-mini" for seen in asked)
    system = asked[-1].json()["messages"][0]
    assert system["role"] == "system" and "cache_control" not in json.dumps(asked[-1].json())


def test_openai_sdk_reaches_a_claude_model(oai_client, routed, ant, tag):
    completion = oai_client.chat.completions.create(
        model="claude-sonnet-4-5",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=50,
    )
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.choices[0].finish_reason == "stop"

    chunks = list(
        oai_client.chat.completions.create(
            model="claude-sonnet-4-5", stream=True, messages=[{"role": "user", "content": "hi again"}]
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]

    plain, streamed = ant.requests(tag)
    assert plain.path == "/v1/messages" and plain.header("x-api-key") == ANT_KEY
    assert plain.header("anthropic-version") == "2023-06-01" and plain.header("authorization") is None
    assert plain.json()["system"] == "Be brief." and plain.json()["max_tokens"] == 50
    assert streamed.json()["stream"] is True and "stream_options" not in streamed.json()
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.prompt_tokens == streamed.usage["input_tokens"]

    for row, expected in zip(rows(routed, tag, 2), (completion.usage, usage)):
        assert (row["surface"], row["provider"], row["model_served"]) == ("openai", "ant", "claude-sonnet-4-5")
        assert (row["input_tokens"], row["output_tokens"]) == (expected.prompt_tokens, expected.completion_tokens)


def test_a_lone_surrogate_is_translated_as_the_client_wrote_it(routed, oai, ant, tag):
    """JSON lets a client write one ("\\ud800"), no UTF-8 text holds one, and relay writes a
    translated body out again: it once answered 500."""
    for path, auth, body, upstream in (
        (
            "/v1/messages",
            {"x-api-key": CLIENT_KEY},
            b'{"model":"' + HAIKU.encode() + rb'","max_tokens":8,"messages":[{"role":"user","content":"a\ud800"}]}',
            oai,
        ),
        (
            "/openai/v1/chat/completions",
            {"authorization": f"Bearer {CLIENT_KEY}"},
            rb'{"model":"claude-sonnet-4-5","stream":true,"messages":[{"role":"user","content":"a\ud800"}]}',
            ant,
        ),
    ):
        answer = httpx.post(
            routed.url + path, content=body, headers={**auth, "content-type": "application/json", "x-test-tag": tag}
        )
        assert answer.status_code == 200, answer.text
        assert rb"a\ud800" in upstream.requests(tag)[-1].body


@pytest.mark.parametrize("scenario", ["status-429", "status-503"])
def test_a_failing_target_falls_back_to_the_next_after_its_own_keys(client, routed, oai, ant, tag, scenario):
    message = client.messages.create(
        model=HAIKU,
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-openai-scenario": scenario},
    )
    assert message.content[0].text == REPLY_TEXT and message.model == HAIKU
    assert len(oai.requests(tag)) == 2  # each key of the first target, then the next target
    [served] = ant.requests(tag)
    assert served.json()["model"] == HAIKU and served.header("x-api-key") == ANT_KEY
    [row] = rows(routed, tag, 1)
    assert (row["provider"], row["model_served"], row["status"]) == ("ant", HAIKU, 200)
    assert row["upstream_key_id"].startswith("ant-") and row["input_tokens"] == message.usage.input_tokens


@pytest.mark.parametrize(
    "scenario, words",
    [("midstream-error", "Overloaded"), ("close-midstream", "ended before the response was complete")],
)
def test_a_broken_openai_stream_reaches_claude_clients_as_an_anthropic_error_event(routed, tag, scenario, words):
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "x-claude-code-session-id": tag,
        "x-fake-openai-scenario": scenario,
        "x-fake-events": "3",
    }
    body = {"model": HAIKU, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", routed.url + "/v1/messages", headers=headers, json=body, timeout=30) as response:
        assert response.status_code == 200
        raw = b"".join(response.iter_raw()).decode()
    assert raw.startswith("event: message_start") and "event: content_block_delta" in raw
    last = raw.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n") and words in last
    assert "message_stop" not in raw and "message_delta" not in raw
    [row] = rows(routed, tag, 1)
    assert (row["status"], row["error_type"], row["provider"]) == (200, "api_error", "oai")


def test_a_client_that_hangs_up_on_a_translated_stream_cancels_the_upstream_request(routed, oai, tag):
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "x-claude-code-session-id": tag,
        "x-test-tag": tag,
        "x-fake-events": "40",
        "x-fake-pace-ms": "100",
    }  # four seconds of stream
    body = {"model": HAIKU, "max_tokens": 16, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", routed.url + "/v1/messages", headers=headers, json=body, timeout=30) as response:
        for line in response.iter_lines():
            if "content_block_delta" in line:
                break  # and hang up
    [row] = rows(routed, tag, 1)
    [seen] = oai.requests(tag)
    assert (row["status"], row["error_type"], row["provider"]) == (200, "client_disconnected", "oai")
    assert row["total_ms"] < 3000
    assert seen.cut_off  # relay closed the upstream connection: the provider stops generating
    # Billed for the output that reached the client (the provider's count never came).
    assert row["usage_basis"] == "estimated" and row["output_tokens"] >= 1


def test_model_lists_show_what_the_routes_expose(client, oai_client):
    assert [m.id for m in client.models.list()] == [HAIKU, "claude-sonnet-4-5"]
    assert [(m.id, m.owned_by) for m in oai_client.models.list()] == [(HAIKU, "oai"), ("claude-sonnet-4-5", "ant")]


SEARCH_RESULT = [
    {
        "role": "user",
        "content": [
            {"type": "search_result", "source": "x", "title": "t", "content": [{"type": "text", "text": "found"}]}
        ],
    }
]


def test_untranslatable_input_is_a_clear_400_in_the_clients_format(client, oai_client, oai, ant, tag):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude-opus-4-5", max_tokens=16, messages=SEARCH_RESULT)
    assert "'search_result'" in caught.value.body["error"]["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        oai_client.chat.completions.create(model="claude-sonnet-4-5", n=2, messages=[{"role": "user", "content": "x"}])
    assert "n > 1" in refused.value.body["message"]
    assert not oai.requests(tag) and not ant.requests(tag)


def test_a_target_that_cannot_take_the_input_gives_way_to_one_that_can(client, oai, ant, tag):
    message = client.messages.create(model=HAIKU, max_tokens=16, messages=SEARCH_RESULT)
    assert message.content[0].text == REPLY_TEXT
    assert not oai.requests(tag) and len(ant.requests(tag)) == 1


def test_interleaved_parallel_tool_calls_arrive_whole_each_in_its_own_block(client, tag):
    headers = {"x-fake-tool-calls": "parallel"}
    ask = dict(model=HAIKU, max_tokens=64, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Oslo, Rome?"}])
    with client.messages.stream(**ask, extra_headers=headers) as events:
        seen = list(events)
        message = events.get_final_message()
    calls = [block for block in message.content if block.type == "tool_use"]
    assert [(c.id, c.input) for c in calls] == [("call_fake_1", {"city": "fake"}), ("call_fake_2", {"city": "fake"})]
    open_blocks = set()
    for event in seen:
        if event.type == "content_block_start":
            open_blocks.add(event.index)
        elif event.type == "content_block_delta":
            assert event.index in open_blocks  # never a delta for a block already stopped
        elif event.type == "content_block_stop":
            open_blocks.discard(event.index)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_stop_sequence_the_provider_names_reaches_the_client_as_stop_sequence(client, tag, stream):
    ask = dict(model=HAIKU, max_tokens=16, stop_sequences=["###"], messages=[{"role": "user", "content": "hi"}])
    headers = {"x-fake-stop-matched": "###"}
    if stream:
        with client.messages.stream(**ask, extra_headers=headers) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**ask, extra_headers=headers)
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")


def test_reasoning_from_an_openai_format_model_does_not_break_a_later_turn_on_claude(client, oai, ant, tag):
    question = [{"role": "user", "content": "hi"}]
    with client.messages.stream(
        model=HAIKU, max_tokens=16, messages=question, extra_headers={"x-fake-reasoning": "thinking it over"}
    ) as events:
        first = events.get_final_message()
    assert first.content[0].type == "thinking" and first.content[0].signature == ""
    history = [*question, {"role": "assistant", "content": [b.model_dump() for b in first.content]}]
    # The next turn falls back to the Anthropic-format target, which refuses unsigned thinking.
    second = client.messages.create(
        model=HAIKU,
        max_tokens=16,
        messages=[*history, {"role": "user", "content": "and?"}],
        extra_headers={"x-fake-openai-scenario": "status-503"},
    )
    assert second.content[0].text == REPLY_TEXT
    [served] = ant.requests(tag)
    assert [b["type"] for b in served.json()["messages"][1]["content"]] == ["text"]


def test_count_tokens_where_only_an_openai_format_model_serves_is_501(client):
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.count_tokens(model="claude-opus-4-5", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 501 and caught.value.body["error"]["type"] == "not_supported"
    assert caught.value.response.headers["x-should-retry"] == "false"
