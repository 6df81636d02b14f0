"""The incremental stream translators, fed upstream streams split at every byte boundary."""

from __future__ import annotations

import json

import pytest

from relay.http import sse
from relay.providers.translate import openai_to_anthropic
from relay.providers.translate.streams import AnthropicToOpenAI, OpenAIToAnthropic


def _openai_stream(*chunks: dict, done: bool = True) -> bytes:
    body = b"".join(sse.frame(None, c) for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def _chunk(delta: dict, finish=None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "model": "gpt-x",
    "choices": [],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 7,
        "total_tokens": 127,
        "prompt_tokens_details": {"cached_tokens": 20},
    },
}

TOOL_STREAM = _openai_stream(
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Let me look. "}),
    _chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_a", "type": "function", "function": {"name": "read_file", "arguments": ""}}
            ]
        }
    ),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"path": '}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"a.txt"}'}}]}),
    _chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_b", "type": "function", "function": {"name": "ls", "arguments": "{}"}}
            ]
        }
    ),
    _chunk({}, "tool_calls"),
    USAGE,
)


def _events(raw: bytes) -> list[tuple[str, dict]]:
    parser = sse.Frames()
    frames = parser.feed(raw) + parser.close()
    return [(event.decode(), json.loads(data)) for event, data in frames]


def _split_runs(translator_factory, upstream: bytes, finish_broken: bool = False):
    """The translator's output for the stream fed whole, and fed split at every boundary."""
    outputs = []
    for cut in range(len(upstream) + 1):
        translator = translator_factory()
        out = translator.feed(upstream[:cut]) + translator.feed(upstream[cut:]) + translator.finish(finish_broken)
        outputs.append(out)
    one_by_one = translator_factory()
    outputs.append(
        b"".join(one_by_one.feed(upstream[i : i + 1]) for i in range(len(upstream))) + one_by_one.finish(finish_broken)
    )
    return outputs


def test_openai_tool_stream_becomes_anthropic_events_whatever_the_chunking():
    outputs = _split_runs(lambda: OpenAIToAnthropic("claude-haiku-4-5"), TOOL_STREAM)
    assert len(set(outputs)) == 1
    events = _events(outputs[0])
    assert [e for e, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["model"] == "gpt-x" and start["id"].startswith("msg_")
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "read_file", "input": {}}
    arguments = "".join(
        d["delta"]["partial_json"] for e, d in events if d.get("index") == 1 and e == "content_block_delta"
    )
    assert json.loads(arguments) == {"path": "a.txt"}
    assert events[8][1]["content_block"]["id"] == "call_b" and events[8][1]["index"] == 2
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"] == {
        "input_tokens": 100,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
        "output_tokens": 7,
    }


def test_each_event_is_given_out_as_soon_as_it_is_complete():
    translator = OpenAIToAnthropic("m")
    first = sse.frame(None, _chunk({"role": "assistant", "content": "Hi"}))
    assert translator.feed(first[:-1]) == b""  # the frame's closing blank line has not arrived
    out = _events(translator.feed(first[-1:]))
    assert [e for e, _ in out] == ["message_start", "content_block_start", "content_block_delta"]
    assert out[-1][1]["delta"] == {"type": "text_delta", "text": "Hi"}


@pytest.mark.parametrize(
    "finish, stop_reason",
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_finish_reasons_map_to_stop_reasons(finish, stop_reason):
    translator = OpenAIToAnthropic("m")
    out = translator.feed(_openai_stream(_chunk({"content": "x"}), _chunk({}, finish))) + translator.finish()
    assert _events(out)[-2][1]["delta"]["stop_reason"] == stop_reason


def test_reasoning_content_becomes_a_thinking_block_before_the_text():
    translator = OpenAIToAnthropic("m")
    out = translator.feed(
        _openai_stream(_chunk({"reasoning_content": "hmm"}), _chunk({"content": "ok"}), _chunk({}, "stop"))
    )
    blocks = [d["content_block"]["type"] for e, d in _events(out) if e == "content_block_start"]
    assert blocks == ["thinking", "text"]


def test_a_midstream_error_chunk_becomes_an_anthropic_error_event_and_ends_the_stream():
    upstream = _openai_stream(
        _chunk({"content": "par"}), {"error": {"message": "Overloaded", "type": "server_error"}}, done=False
    )
    for out in _split_runs(lambda: OpenAIToAnthropic("m"), upstream):
        events = _events(out)
        assert events[-1] == ("error", {"type": "error", "error": {"type": "api_error", "message": "Overloaded"}})
        assert "message_stop" not in [e for e, _ in events]


@pytest.mark.parametrize("broken", [True, False])
def test_a_stream_cut_short_ends_with_an_error_not_a_normal_finish(broken):
    translator = OpenAIToAnthropic("m")
    out = translator.feed(_openai_stream(_chunk({"content": "par"}), done=False)) + translator.finish(broken)
    events = _events(out)
    assert events[-1][0] == "error" and "ended before" in events[-1][1]["error"]["message"]
    assert "message_delta" not in [e for e, _ in events]


def test_done_without_a_finish_reason_is_an_error_too():
    translator = OpenAIToAnthropic("m")
    events = _events(translator.feed(_openai_stream(_chunk({"content": "x"}))) + translator.finish())
    assert events[-1][0] == "error"


def test_a_stream_that_finished_but_sent_no_done_still_completes():
    translator = OpenAIToAnthropic("m")
    out = translator.feed(_openai_stream(_chunk({"content": "x"}), _chunk({}, "stop"), USAGE, done=False))
    events = _events(out + translator.finish())
    assert [e for e, _ in events][-2:] == ["message_delta", "message_stop"]


# --- Anthropic stream -> OpenAI chunks --------------------------------------------------


def _anthropic_stream(*events: dict) -> bytes:
    return b"".join(sse.frame(e["type"], e) for e in events)


ANTHROPIC_TOOL_STREAM = _anthropic_stream(
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {
                "input_tokens": 50,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 5,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city"'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ': "Oslo"}'}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
)


def _chunks(raw: bytes) -> list:
    parser = sse.Frames()
    return [data.decode() if data == b"[DONE]" else json.loads(data) for _, data in parser.feed(raw) + parser.close()]


def test_anthropic_tool_stream_becomes_openai_chunks_whatever_the_chunking():
    outputs = _split_runs(lambda: AnthropicToOpenAI(True, 1700000000), ANTHROPIC_TOOL_STREAM)
    assert len(set(outputs)) == 1
    chunks = _chunks(outputs[0])
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["id"] == "msg_1" and c["model"] == "claude-x" for c in chunks[:-1])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1] if c["choices"])
    assert text == "Checking."
    calls = [call for c in chunks[:-1] if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Oslo"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert [f for f in finishes if f] == ["tool_calls"]
    usage = chunks[-2]
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 85,
        "completion_tokens": 9,
        "total_tokens": 94,
        "prompt_tokens_details": {"cached_tokens": 30},
    }


def test_no_usage_chunk_unless_the_client_asked():
    translator = AnthropicToOpenAI(False, 0)
    chunks = _chunks(translator.feed(ANTHROPIC_TOOL_STREAM) + translator.finish())
    assert all("usage" not in c for c in chunks[:-1]) and chunks[-1] == "[DONE]"


def test_anthropic_error_event_becomes_an_openai_error_chunk_without_done():
    upstream = _anthropic_stream(
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {}}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    translator = AnthropicToOpenAI(True, 0)
    chunks = _chunks(translator.feed(upstream) + translator.finish())
    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "param": None, "code": None}}


def test_anthropic_stream_cut_short_ends_with_an_error_chunk():
    translator = AnthropicToOpenAI(True, 0)
    cut = ANTHROPIC_TOOL_STREAM[: len(ANTHROPIC_TOOL_STREAM) // 2]
    chunks = _chunks(translator.feed(cut) + translator.finish(broken=True))
    assert "error" in chunks[-1] and "[DONE]" not in chunks


def test_interleaved_parallel_tool_calls_each_get_their_own_arguments_in_an_open_block():
    def call(index, arguments, call_id=None, name=None):
        fragment = {"index": index, "function": {"arguments": arguments}}
        if call_id:
            fragment.update(id=call_id, type="function")
            fragment["function"]["name"] = name
        return _chunk({"tool_calls": [fragment]})

    upstream = _openai_stream(
        _chunk({"role": "assistant", "content": ""}),
        call(0, '{"city": ', "call_a", "get_weather"),
        call(1, '{"city": ', "call_b", "get_weather"),
        call(0, '"Oslo"}'),
        call(1, '"Rome"}'),
        _chunk({}, "tool_calls"),
    )
    outputs = _split_runs(lambda: OpenAIToAnthropic("m"), upstream)
    assert len(set(outputs)) == 1
    events = _events(outputs[0])
    open_blocks, arguments, starts = set(), {}, []
    for event, data in events:
        if event == "content_block_start":
            open_blocks.add(data["index"])
            starts.append((data["index"], data["content_block"]["id"]))
        elif event == "content_block_delta":
            assert data["index"] in open_blocks, "a delta for a block that is not open"
            arguments[data["index"]] = arguments.get(data["index"], "") + data["delta"]["partial_json"]
        elif event == "content_block_stop":
            open_blocks.remove(data["index"])
    assert starts == [(0, "call_a"), (1, "call_b")]
    assert {i: json.loads(a) for i, a in arguments.items()} == {0: {"city": "Oslo"}, 1: {"city": "Rome"}}


def test_sequential_calls_reusing_an_index_stream_one_after_the_other():
    upstream = _openai_stream(
        _chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]}
        ),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "c2", "type": "function", "function": {"name": "b", "arguments": "{"}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        _chunk({}, "tool_calls"),
    )
    translator = OpenAIToAnthropic("m")
    first = _events(translator.feed(upstream.split(b"\n\n", 3)[0] + b"\n\n" + upstream.split(b"\n\n", 3)[1] + b"\n\n"))
    assert [e for e, _ in first][-3:] == ["content_block_stop", "content_block_start", "content_block_delta"]
    rest = _events(translator.feed(upstream.split(b"\n\n", 2)[2]) + translator.finish())
    deltas = [d["delta"]["partial_json"] for e, d in first + rest if e == "content_block_delta"]
    assert deltas == ["{}", "{", "}"]


@pytest.mark.parametrize(
    "choice_fields, stop_reason, stop_sequence",
    [
        ({"stop_reason": "###"}, "stop_sequence", "###"),  # vLLM says which stop string matched
        ({"matched_stop": "END"}, "stop_sequence", "END"),  # SGLang
        ({"stop_reason": 50256}, "end_turn", None),  # a stop token, not a stop sequence
        ({}, "end_turn", None),  # OpenAI itself does not say
    ],
)
def test_a_matched_stop_sequence_is_reported_when_the_provider_names_it(choice_fields, stop_reason, stop_sequence):
    final = _chunk({}, "stop")
    final["choices"][0].update(choice_fields)
    translator = OpenAIToAnthropic("m")
    events = _events(translator.feed(_openai_stream(_chunk({"content": "a"}), final)) + translator.finish())
    [delta] = [d for e, d in events if e == "message_delta"]
    assert delta["delta"] == {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    completion = {"choices": [{"message": {"content": "a"}, "finish_reason": "stop", **choice_fields}]}
    message = openai_to_anthropic.message(completion)
    assert (message["stop_reason"], message["stop_sequence"]) == (stop_reason, stop_sequence)
