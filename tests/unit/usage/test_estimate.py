"""The output of a stream cut short, counted from its deltas (relay.usage.estimate)."""

from __future__ import annotations

import json

import pytest

from relay.usage.estimate import output_tokens


def _data(payload) -> bytes:
    return json.dumps(payload).encode()


def _anthropic(kind: str, field: str, text: str) -> bytes:
    return _data({"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: text}})


@pytest.mark.parametrize(
    "delta, tokens",
    [
        (_anthropic("text_delta", "text", "Hello, world"), 3),  # 12 bytes
        (_anthropic("text_delta", "text", "Hi"), 1),  # at least one a delta
        (_anthropic("text_delta", "text", "日本語のテキスト"), 6),  # 24 bytes of UTF-8
        (_anthropic("input_json_delta", "partial_json", '{"city": "Par'), 4),
        (_anthropic("thinking_delta", "thinking", "Let me think."), 4),
        (_anthropic("signature_delta", "signature", "EqQBCgIYAhIM" * 10), 0),  # no generated text
        (_anthropic("text_delta", "text", ""), 0),
        (b"not json", 0),
        (_data(["a list"]), 0),
    ],
)
def test_anthropic_deltas(delta, tokens):
    assert output_tokens("anthropic", [delta]) == tokens


def _chat(delta: dict) -> bytes:
    return _data({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})


@pytest.mark.parametrize(
    "chunk, tokens",
    [
        (_chat({"role": "assistant", "content": ""}), 0),
        (_chat({"content": " world"}), 2),
        (_chat({"reasoning_content": "First, the user"}), 4),
        (_chat({"refusal": "I can't"}), 2),
        (
            _chat({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}}]}),
            3,
        ),
        (_chat({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}), 2),
        (_data({"object": "text_completion", "choices": [{"index": 0, "text": "once upon"}]}), 3),
        (_data({"type": "response.output_text.delta", "delta": "Hello there"}), 3),
        (_data({"type": "response.function_call_arguments.delta", "delta": '{"a":1}'}), 2),
        (_data({"type": "response.created", "response": {"output_text": "not a delta"}}), 0),
        (_data({"choices": [], "usage": None}), 0),
        (_data({"choices": "odd"}), 0),
    ],
)
def test_openai_chunks_and_events(chunk, tokens):
    assert output_tokens("openai", [chunk]) == tokens


def test_each_delta_counts_for_itself():
    """Five deltas of one byte each are five tokens, not two."""
    assert output_tokens("anthropic", [_anthropic("text_delta", "text", "x")] * 5) == 5
