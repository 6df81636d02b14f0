"""Requests and whole responses between the Anthropic and OpenAI formats."""

from __future__ import annotations

import json

import pytest

from relay.providers.translate import TranslationError, anthropic_to_openai, openai_to_anthropic

PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
CACHE = {"cache_control": {"type": "ephemeral"}}


def _claude_code_like() -> dict:
    """The shape Claude Code sends: system blocks with cache_control, a system-role message
    mid-conversation, tools, thinking, a tool round trip with an image in the result."""
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 32000,
        "stream": True,
        "temperature": 1,
        "metadata": {"user_id": '{"session_id": "s"}'},
        "context_management": {"edits": []},
        "system": [{"type": "text", "text": "You are Claude Code."}, {"type": "text", "text": "Be brief.", **CACHE}],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "tools": [
            {
                "name": "Read",
                "description": "Read a file",
                "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stop_sequences": ["</done>"],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Show me a.png", **CACHE}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should read it", "signature": "sig"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.png"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "here you go"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "an image"}, {"type": "image", "source": PNG}],
                    },
                ],
            },
            {"role": "system", "content": "Reminder: stay on task."},
        ],
    }


def test_claude_code_request_becomes_a_chat_completions_request():
    out = anthropic_to_openai.request(_claude_code_like(), "gpt-x", reasoning=True)
    assert out["model"] == "gpt-x" and out["max_tokens"] == 32000 and out["temperature"] == 1
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["stop"] == ["</done>"] and out["reasoning_effort"] == "high"
    assert out["tool_choice"] == "auto" and out["parallel_tool_calls"] is False
    assert out["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Read",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        }
    ]
    system, user, assistant, tool, user_after, reminder = out["messages"]
    assert system == {"role": "system", "content": "You are Claude Code.\n\nBe brief."}
    assert user == {"role": "user", "content": "Show me a.png"}
    assert assistant == {
        "role": "assistant",
        "content": "Reading.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"path": "a.png"}'}}
        ],
    }
    # The tool's answer comes right after the call; its image and the user's words follow.
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": "an image"}
    assert user_after["role"] == "user"
    assert user_after["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert user_after["content"][-1] == {"type": "text", "text": "here you go"}
    assert reminder == {"role": "system", "content": "Reminder: stay on task."}
    assert "cache_control" not in json.dumps(out) and "metadata" not in out and "thinking" not in out


def test_reasoning_effort_only_for_reasoning_providers_and_by_budget():
    body = _claude_code_like()
    assert "reasoning_effort" not in anthropic_to_openai.request(body, "m")
    for budget, effort in ((1024, "low"), (10000, "medium"), (20000, "high")):
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        assert anthropic_to_openai.request(body, "m", reasoning=True)["reasoning_effort"] == effort
    body["output_config"] = {"effort": "low"}
    assert anthropic_to_openai.request(body, "m", reasoning=True)["reasoning_effort"] == "low"
    body.pop("output_config")
    body["thinking"] = {"type": "disabled"}
    assert "reasoning_effort" not in anthropic_to_openai.request(body, "m", reasoning=True)


def test_max_tokens_field_follows_the_provider():
    out = anthropic_to_openai.request(_claude_code_like(), "o-x", max_tokens_field="max_completion_tokens")
    assert out["max_completion_tokens"] == 32000 and "max_tokens" not in out


@pytest.mark.parametrize(
    "choice, expected",
    [
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "Read"}, {"type": "function", "function": {"name": "Read"}}),
    ],
)
def test_tool_choice(choice, expected):
    body = {**_claude_code_like(), "tool_choice": choice}
    assert anthropic_to_openai.request(body, "m")["tool_choice"] == expected


def test_error_results_url_images_and_string_system():
    body = {
        "system": "Plain.",
        "messages": [
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": True, "content": "boom"}],
            },
        ],
    }
    system, user, assistant, tool = anthropic_to_openai.request(body, "m")["messages"]
    assert system == {"role": "system", "content": "Plain."}
    assert user["content"] == [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]
    assert assistant["content"] is None
    assert tool == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}


@pytest.mark.parametrize(
    "body, words",
    [
        ({"messages": "hi"}, "messages must be a list"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "'audio'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        ({"messages": [{"role": "user", "content": 5}]}, "string or a list"),
        ({"system": [{"type": "image"}], "messages": []}, "only text"),
        ({"messages": [], "tool_choice": {"type": "magic"}}, "tool_choice"),
    ],
)
def test_shapes_openai_cannot_take_are_refused_with_a_reason(body, words):
    with pytest.raises(TranslationError, match=words):
        anthropic_to_openai.request(body, "m")


def test_openai_completion_becomes_an_anthropic_message():
    completion = {
        "id": "chatcmpl-9",
        "model": "gpt-x",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "Read", "arguments": '{"path": "a"}'},
                        },
                        {"id": "call_2", "type": "function", "function": {"name": "Bad", "arguments": "{not json"}},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 10}},
    }
    message = openai_to_anthropic.message(completion)
    assert message["id"] == "msg_chatcmpl-9" and message["model"] == "gpt-x"
    assert message["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a"}},
        {"type": "tool_use", "id": "call_2", "name": "Bad", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 5,
    }


def test_an_odd_completion_still_becomes_a_valid_message():
    message = openai_to_anthropic.message({"choices": None})
    assert message["content"] == [] and message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 0


# --- OpenAI request -> Anthropic request --------------------------------------------------


def test_openai_tool_round_trip_becomes_anthropic_turns():
    body = {
        "model": "claude-sonnet-4-5",
        "max_completion_tokens": 300,
        "temperature": 1.5,
        "stop": "END",
        "user": "u-1",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}},
            }
        ],
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Oslo and Rome?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "4C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "21C"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"},
            {"role": "system", "content": "Answer in one word."},
        ],
    }
    out = openai_to_anthropic.request(body, "claude-sonnet-4-5")
    assert out["system"] == "Be terse.\n\nUse metric."
    assert out["max_tokens"] == 300 and out["temperature"] == 1.0 and out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-1"} and out["stream"] is True and "stream_options" not in out
    assert out["tools"] == [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    user, assistant, results, reminder = out["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert [b["input"] for b in assistant["content"]] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": [{"type": "text", "text": "4C"}]},
            {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "21C"}]},
            {"type": "text", "text": "Thanks. Which is warmer?"},
        ],
    }
    assert reminder == {"role": "system", "content": "Answer in one word."}


def test_defaults_and_reasoning_effort():
    out = openai_to_anthropic.request(
        {"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium", "temperature": 0.2}, "claude-x"
    )
    assert out["max_tokens"] == openai_to_anthropic.DEFAULT_MAX_TOKENS
    assert out["thinking"] == {"type": "enabled", "budget_tokens": openai_to_anthropic.DEFAULT_MAX_TOKENS - 1}
    assert "temperature" not in out  # Anthropic allows no sampling changes while thinking


@pytest.mark.parametrize(
    "body, words",
    [
        ({"messages": []}, "non-empty"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 3}, "n > 1"),
        (
            {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
            "response_format",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input_audio"),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{x"}}]}
                ]
            },
            "not JSON",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
    ],
)
def test_openai_shapes_anthropic_cannot_take_are_refused(body, words):
    with pytest.raises(TranslationError, match=words):
        openai_to_anthropic.request(body, "claude-x")


def test_anthropic_message_becomes_an_openai_completion():
    message = {
        "id": "msg_1",
        "model": "claude-x",
        "stop_reason": "max_tokens",
        "content": [
            {"type": "thinking", "thinking": "..."},
            {"type": "text", "text": "Par"},
            {"type": "text", "text": "tial"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 3},
    }
    completion = anthropic_to_openai.completion(message, 1700000000)
    assert completion["object"] == "chat.completion" and completion["created"] == 1700000000
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == "Partial"
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert completion["usage"] == {
        "prompt_tokens": 14,
        "completion_tokens": 3,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
    }
