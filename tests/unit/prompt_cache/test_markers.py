"""Prompt-cache markers (relay/prompt_cache/markers.py) over many body shapes, and their place in the pipeline."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.http import json_spans
from relay.http.messages import Headers, Request, Response
from relay.pipeline.app import handle
from relay.prompt_cache import markers
from relay.services import Services
from tests.fakes.platform import RecordingTransport
from tests.fakes.streams import read_body

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
LONG = "Follow the project's rules. " * 400  # ~2,800 tokens by relay's estimate


# --- helpers ------------------------------------------------------------------------------


def run(body: dict | bytes, policy: str = "auto") -> tuple[bytes, int, bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    parsed, shape = json_spans.loads(raw)
    injection = markers.add_markers(raw, parsed, shape, policy)
    return raw, injection.markers_added, injection.body


def places(value, path=()) -> list[tuple[tuple, dict]]:
    """(path, cache_control) of every marker in a body, in prefix order tools, system, messages."""
    if isinstance(value, dict):
        found = [(path, value["cache_control"])] if isinstance(value.get("cache_control"), dict) else []
        order = (
            sorted(
                value,
                key=lambda k: ("tools", "system", "messages").index(k) if k in ("tools", "system", "messages") else 3,
            )
            if not path
            else list(value)
        )
        return found + [hit for key in order if key != "cache_control" for hit in places(value[key], path + (key,))]
    if isinstance(value, list):
        return [hit for index, item in enumerate(value) for hit in places(item, path + (index,))]
    return []


def strip_relay(text: str) -> str:
    """The text without the bytes relay splices in (a marker; a string made a text block).
    Applied to both sides, so a client's own compact single-block lists compare equal too."""
    text = re.sub(r',"cache_control":\{"type":"ephemeral"(?:,"ttl":"1h")?\}', "", text)
    return re.sub(r'\[\{"type":"text","text":("(?:[^"\\]|\\.)*")\}\]', r"\1", text)


def without_markers(value, original):
    """`value` with the markers `original` lacks removed, and string content turned back."""
    if isinstance(original, str) and isinstance(value, list):
        return (
            original
            if value == [{"type": "text", "text": original, "cache_control": value[0].get("cache_control")}]
            else value
        )
    if isinstance(value, dict) and isinstance(original, dict):
        return {
            k: without_markers(v, original.get(k)) for k, v in value.items() if k != "cache_control" or k in original
        }
    if isinstance(value, list) and isinstance(original, list) and len(value) == len(original):
        return [without_markers(v, o) for v, o in zip(value, original)]
    return value


def ttl_rank(control: dict) -> int:
    return 2 if control.get("ttl") == "1h" else 1


# --- strategies ---------------------------------------------------------------------------

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
padding = st.sampled_from(["", LONG, LONG * 2])
control = st.sampled_from([None, None, None, None, EPHEMERAL, HOUR])


def marked(block: dict, mark) -> dict:
    return {**block, "cache_control": mark} if mark else block


@st.composite
def text_block(draw):
    return marked({"type": "text", "text": draw(words) + draw(padding)}, draw(control))


@st.composite
def block(draw):
    kind = draw(st.sampled_from(["text", "text", "thinking", "redacted", "tool_use", "tool_result", "image", "odd"]))
    if kind == "text":
        return draw(text_block())
    if kind == "thinking":
        return {"type": "thinking", "thinking": draw(words), "signature": "sig+/=" + draw(words)}
    if kind == "redacted":
        return {"type": "redacted_thinking", "data": "opaque" + draw(words)}
    if kind == "tool_use":
        return marked(
            {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": draw(words)}}, draw(control)
        )
    if kind == "tool_result":
        inner = draw(st.lists(text_block(), max_size=2) | words)
        return marked({"type": "tool_result", "tool_use_id": "toolu_1", "content": inner}, draw(control))
    if kind == "image":
        return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}}
    return {"type": "future_block", "x-unknown": draw(words), "nested": [1, 2.5, None, True]}


@st.composite
def message(draw, role):
    content = draw(st.lists(block(), min_size=0, max_size=4) | (words.map(lambda w: w + draw(padding))))
    return {"role": role, "content": content}


@st.composite
def bodies(draw):
    body: dict = {
        "model": draw(
            st.sampled_from(["claude-sonnet-4-5", "claude-3-5-haiku-latest", "claude-opus-4-5", "some-future-model"])
        )
    }
    if draw(st.booleans()):
        body["tools"] = [
            marked(
                {"name": f"tool{i}", "description": draw(words) + draw(padding), "input_schema": {"type": "object"}},
                draw(control),
            )
            for i in range(draw(st.integers(0, 3)))
        ]
    if draw(st.booleans()):
        body["system"] = draw(words.map(lambda w: w + draw(padding)) | st.lists(text_block(), max_size=3))
    turns = draw(st.integers(1, 5))
    body["messages"] = [draw(message("user" if i % 2 == 0 else "assistant")) for i in range(turns)]
    if draw(st.booleans()):
        body["metadata"] = {"user_id": draw(words)}
    if draw(st.booleans()):
        body["x-future-field"] = {"keep": [draw(words)]}
    keys = list(body)
    order = draw(st.permutations(keys))
    return {key: body[key] for key in order}


styles = st.sampled_from(
    [dict(), dict(ensure_ascii=False), dict(separators=(",", ":"), ensure_ascii=False), dict(indent=2)]
)
policies = st.sampled_from(markers.POLICIES)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties ---------------------------------------------------------------------------


@SETTINGS
@given(bodies(), styles, policies)
def test_markers_are_the_only_change_and_never_exceed_four(body, style, policy):
    raw, added, out = run(json.dumps(body, **style).encode(), policy)

    before, after = places(body), places(json.loads(out))
    if added == 0:
        assert out == raw
    assert len(after) == len(before) + added
    assert added == 0 or len(after) <= markers.MAX_MARKERS
    assert without_markers(json.loads(out), body) == body
    assert strip_relay(out.decode()) == strip_relay(raw.decode())  # every other byte, non-ASCII too


@SETTINGS
@given(bodies(), styles, policies)
def test_a_body_relay_marks_is_one_may_mark_admits(body, style, policy):
    # The pipeline parses a body's layout only when may_mark admits it: never one it would mark.
    raw, added, _ = run(json.dumps(body, **style).encode(), policy)
    assert added == 0 or markers.may_mark(len(raw), policy)


def test_the_shortest_prefix_marked_is_the_least_minimum():
    least = markers.SHORTEST_MARKED_BYTES // markers.CHARS_PER_TOKEN
    assert least == min(tokens for _, tokens in markers.MINIMUM_TOKENS + (("", markers.DEFAULT_MINIMUM_TOKENS),))
    ask = [{"role": "user", "content": "hi"}]
    quotes = 2  # a string system's span holds its quotes
    shortest = {"model": "claude-sonnet-4-5", "system": "x" * (markers.SHORTEST_MARKED_BYTES - quotes), "messages": ask}
    assert run(shortest, "system")[1] == 1
    assert run({**shortest, "system": shortest["system"][1:]}, "system")[1] == 0
    assert not markers.may_mark(markers.SHORTEST_MARKED_BYTES - 1, "auto")
    assert not markers.may_mark(10**6, "off") and markers.may_mark(10**6, "auto-1h")


@SETTINGS
@given(bodies(), styles, policies)
def test_adding_is_idempotent(body, style, policy):
    _, _, once = run(json.dumps(body, **style).encode(), policy)
    _, added, twice = run(once, policy)
    assert (added, twice) == (0, once)


@SETTINGS
@given(bodies(), policies)
def test_markers_land_only_where_the_api_allows_and_keep_long_ttls_first(body, policy):
    _, added, out = run(body, policy)
    result = json.loads(out)
    clients = {path for path, _ in places(body)}
    for path in {path for path, _ in places(result)} - clients:
        holder = result
        for step in path:
            holder = holder[step]
        assert holder.get("type") not in ("thinking", "redacted_thinking")
        assert holder.get("type") != "text" or holder["text"] != ""
    ranks = [ttl_rank(control) for _, control in places(body)]
    if added and ranks == sorted(ranks, reverse=True):
        after = [ttl_rank(control) for _, control in places(result)]
        assert after == sorted(after, reverse=True)


@SETTINGS
@given(bodies())
def test_thinking_blocks_and_their_signatures_are_untouched(body):
    _, _, out = run(body, "auto")
    result = json.loads(out)
    for sent, got in zip(body["messages"], result["messages"]):
        if isinstance(sent["content"], list):
            for a, b in zip(sent["content"], got["content"]):
                if a.get("type") in ("thinking", "redacted_thinking"):
                    assert a == b


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["messages", "system", "tools", "model", "x"]) | words, json_values, max_size=5),
    styles,
)
def test_the_layout_reader_parses_exactly_like_json_loads(value, style):
    raw = json.dumps(value, **style).encode()
    parsed, shape = json_spans.loads(raw)
    assert parsed == json.loads(raw) and shape is not None
    for key, (start, end) in shape.values.items():
        assert json.loads(shape.text[start:end]) == parsed[key]


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6), st.integers(1, 6), styles | st.just(dict(indent="\t")))
def test_the_last_items_found_from_the_end_are_those_read_from_the_start(values, count, style):
    text = json.dumps({"messages": values}, **style)
    shape = json_spans.loads(text.encode())[1]
    count = min(count, len(values))
    whole = json_spans.items(text, shape.values["messages"][0])[1]
    assert json_spans.last_items(text, shape.values["messages"], values, count) == whole[len(values) - count :]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1,}',
        b'{"a" 1}',
        b'{"a": [1 2]}',
        b'{"a": 1} x',
        b"[1]",
        b'"s"',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "é"}'.encode("utf-16"),
        b'{"a": NaN}',
        b'{"a": 1, "a": 2}',
        b"\xff",
    ],
)
def test_the_layout_reader_accepts_and_refuses_what_json_loads_does(raw):
    try:
        expected = json.loads(raw)
    except ValueError as error:
        with pytest.raises(type(error)):
            json_spans.loads(raw)
    else:
        assert json.dumps(json_spans.loads(raw)[0]) == json.dumps(expected)


def test_the_layout_reader_parses_without_the_cycle_collector_and_turns_it_back_on(monkeypatch):
    """The collector's passes over a growing heap made a long parse superlinear."""
    during = []
    scan = json_spans._scan
    monkeypatch.setattr(json_spans, "_scan", lambda text, index: during.append(gc.isenabled()) or scan(text, index))
    json_spans.loads(b'{"a": [1], "b": {}}')
    with pytest.raises(ValueError):
        json_spans.loads(b'{"a": [1 2]}')
    assert during and not any(during) and gc.isenabled()
    plain, parse = [], json.loads
    monkeypatch.setattr(json_spans.json, "loads", lambda raw: plain.append(gc.isenabled()) or parse(raw))
    assert json_spans.loads(b'{"a": [1]}', with_layout=False) == ({"a": [1]}, None)
    assert plain == [False] and gc.isenabled()  # without a layout too
    monkeypatch.undo()
    gc.disable()
    try:
        json_spans.loads(b'{"a": 1}')
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


# --- placement ----------------------------------------------------------------------------


def claude_code_body(turns: int = 1) -> dict:
    """The shape CLIENTS.md records: 3 system blocks (2 marked), 12 unmarked tools, last block marked."""
    tools = [{"name": f"Tool{i}", "description": LONG[:2500], "input_schema": {"type": "object"}} for i in range(12)]
    messages = []
    for turn in range(turns):
        messages.append({"role": "user", "content": [{"type": "text", "text": f"step {turn}"}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "ok"}]})
    messages.append({"role": "user", "content": [{"type": "text", "text": "say hi", "cache_control": EPHEMERAL}]})
    return {
        "model": "claude-sonnet-4-5",
        "messages": messages,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
            {"type": "text", "text": LONG, "cache_control": EPHEMERAL},
        ],
        "tools": tools,
        "max_tokens": 32000,
    }


def test_a_claude_code_request_gets_only_the_fourth_marker_on_its_tools():
    _, added, out = run(claude_code_body())
    result = json.loads(out)
    assert added == 1
    assert result["tools"][-1]["cache_control"] == EPHEMERAL
    assert len(places(result)) == 4


def test_four_client_markers_leave_the_body_as_sent():
    marked_turns = [
        {
            "role": ("user", "assistant")[i % 2],
            "content": [{"type": "text", "text": f"turn {i}", "cache_control": EPHEMERAL}],
        }
        for i in range(4)
    ]
    body = {
        "model": "claude-sonnet-4-5",
        "system": LONG,
        "tools": [{"name": "t", "description": LONG}],
        "messages": marked_turns + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": LONG}],
    }
    raw, added, out = run(body)
    assert (added, out) == (0, raw)
    body["messages"][0]["content"][0].pop("cache_control")
    assert run(body)[1] == 1  # one place free: the most valuable one, the tail


def test_escaped_marker_keys_count_as_the_client_markers_they_are():
    """JSON lets a key be written with escapes: the API reads "cache\u005fcontrol" as
    cache_control, so relay must count it too (4 went in once, and 5 came out: a 400)."""
    body = {
        "model": "claude-sonnet-4-5",
        "system": LONG,
        "tools": [{"name": "t", "description": LONG}],
        "messages": [
            {
                "role": ("user", "assistant")[i % 2],
                "content": [{"type": "text", "text": f"turn {i}", "cache_control": EPHEMERAL}],
            }
            for i in range(4)
        ]
        + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": LONG}],
    }
    raw = json.dumps(body).encode()
    for escaped in (rb'"cache\u005fcontrol"', rb'"\u0063ache_contro\u006C"', rb'"\u0063\u0061che_control"'):
        text = raw.replace(b'"cache_control"', escaped, 1)
        assert json.loads(text) == body
        assert run(text)[1:] == (0, text)


def test_an_escaped_one_hour_ttl_is_read_as_one():
    """A 5-minute marker may not precede the client's 1-hour one, however "ttl" is written."""
    body = {
        "model": "claude-sonnet-4-5",
        "system": LONG,
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": HOUR}]},
        ],
    }
    raw = json.dumps(body).encode().replace(b'"ttl"', rb'"\u0074tl"')
    assert json.loads(raw) == body
    assert run(raw)[1:] == (0, raw)
    body["messages"][2]["content"][0]["cache_control"] = EPHEMERAL
    assert run(body)[1] == 1  # the system prompt's marker, before the client's 5-minute one


def test_a_string_system_becomes_one_marked_text_block():
    body = {"model": "claude-sonnet-4-5", "system": LONG, "messages": [{"role": "user", "content": "hi"}]}
    _, added, out = run(body, "system")
    assert added == 1
    assert json.loads(out)["system"] == [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}]


def test_the_last_system_block_gets_the_marker_and_the_tail_waits_for_a_second_message():
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": LONG}, {"type": "text", "text": "b"}],
        "messages": [{"role": "user", "content": LONG}],
    }
    _, added, out = run(body, "auto")
    result = json.loads(out)
    assert added == 1 and result["system"][1]["cache_control"] == EPHEMERAL
    assert result["messages"] == body["messages"]  # a one-shot request pays no write premium on its tail


def test_a_conversation_tail_is_marked_past_thinking_blocks():
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [
            {"role": "user", "content": LONG},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "ok"},
                    {"type": "thinking", "thinking": "hmm", "signature": "c2ln"},
                ],
            },
        ],
    }
    _, added, out = run(body, "auto")
    content = json.loads(out)["messages"][1]["content"]
    assert added == 1 and content[0]["cache_control"] == EPHEMERAL and "cache_control" not in content[1]


def test_below_the_models_minimum_nothing_is_added():
    text = "word " * 1600  # ~2,000 tokens: enough for Sonnet (1,024), not for Haiku 4.5 (4,096)
    body = {"system": text, "messages": [{"role": "user", "content": "hi"}]}
    assert run({"model": "claude-sonnet-4-5", **body}, "system")[1] == 1
    raw, added, out = run({"model": "claude-haiku-4-5", **body}, "system")
    assert (added, out) == (0, raw)
    raw, added, out = run({"model": "claude-sonnet-4-5", "system": "short", "messages": body["messages"]})
    assert (added, out) == (0, raw)


def test_one_hour_markers_go_on_the_prefix_and_give_way_to_an_earlier_five_minute_one():
    body = {
        "model": "claude-sonnet-4-5",
        "system": LONG,
        "tools": [{"name": "t", "input_schema": {}}],
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    result = json.loads(run(body, "auto-1h")[2])
    assert result["system"][0]["cache_control"] == HOUR
    assert result["messages"][2]["content"][0]["cache_control"] == EPHEMERAL
    body["tools"][0]["cache_control"] = EPHEMERAL  # the client's 5-minute marker comes first
    result = json.loads(run(body, "auto-1h")[2])
    assert result["system"][0]["cache_control"] == EPHEMERAL


def test_client_markers_in_the_wrong_ttl_order_get_nothing_added():
    body = {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": LONG, "cache_control": EPHEMERAL}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a", "cache_control": HOUR}]},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    raw, added, out = run(body)
    assert (added, out) == (0, raw)


def test_the_apis_automatic_caching_is_left_to_the_api():
    body = {
        "model": "claude-sonnet-4-5",
        "cache_control": EPHEMERAL,
        "system": LONG,
        "messages": [{"role": "user", "content": "a"}],
    }
    raw, added, out = run(body)
    assert (added, out) == (0, raw)


def test_the_previous_turns_tail_is_marked_only_when_the_look_back_cannot_reach_it():
    def body(results: int) -> dict:
        calls = [{"type": "tool_use", "id": f"t{i}", "name": "grep", "input": {}} for i in range(results)]
        answers = [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "found"} for i in range(results)]
        return {
            "model": "claude-sonnet-4-5",
            "system": LONG,
            "messages": [
                {"role": "user", "content": "find it"},
                {"role": "assistant", "content": calls},
                {"role": "user", "content": answers},
            ],
        }

    assert run(body(3))[1] == 2  # system + tail: the tail's look-back reaches the previous tail
    result = json.loads(run(body(12))[2])
    assert result["messages"][0]["content"][0]["cache_control"] == EPHEMERAL
    assert len(places(result)) == 3


def test_only_defer_loading_free_tools_are_marked():
    body = {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"name": "a", "description": LONG, "input_schema": {}},
            {"name": "b", "input_schema": {}, "defer_loading": True},
        ],
    }
    result = json.loads(run(body, "system")[2])
    assert result["tools"][0]["cache_control"] == EPHEMERAL and "cache_control" not in result["tools"][1]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "claude-sonnet-4-5", "messages": "not a list", "system": LONG},
        {"model": "claude-sonnet-4-5", "messages": [None, 3, "x", {"role": "user", "content": None}], "system": LONG},
        {"model": 7, "system": [None, {"type": "text", "text": LONG * 2}], "messages": [{"content": [{}]}, {}]},
        {"model": "claude-sonnet-4-5", "tools": {"a": 1}, "system": {"text": LONG}, "messages": []},
    ],
)
def test_shapes_relay_does_not_understand_never_raise(body):
    raw, added, out = run(body)
    assert json.loads(out) == body or added > 0
    assert without_markers(json.loads(out), body) == body


# --- in the pipeline ----------------------------------------------------------------------


def post(path: str, body: dict, env: dict) -> tuple[Response, list[bytes]]:
    transport = RecordingTransport()
    raw = json.dumps(body).encode()

    request = Request("POST", path, "", Headers([("x-api-key", "client-key")]), read_body(raw))
    response = asyncio.run(
        handle(
            request,
            {"RELAY_CLIENT_KEYS": "client-key", "ANTHROPIC_API_KEYS": "sk-up", **env},
            Services(transport=transport),
        )
    )
    return response, [body for *_, body in transport.sent]


CONVERSATION = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 5,
    "system": LONG,
    "messages": [{"role": "user", "content": "a"}],
}


def test_the_pipeline_marks_messages_but_not_count_tokens():
    _, sent = post("/v1/messages", CONVERSATION, {})
    assert json.loads(sent[0])["system"][0]["cache_control"] == EPHEMERAL  # default policy: auto
    _, sent = post("/v1/messages/count_tokens", CONVERSATION, {})
    assert sent[0] == json.dumps(CONVERSATION).encode()


def test_relay_cache_policy_off_forwards_the_body_as_sent():
    _, sent = post("/v1/messages", CONVERSATION, {"RELAY_CACHE_POLICY": "off"})
    assert sent[0] == json.dumps(CONVERSATION).encode()


def test_a_body_nested_too_deep_to_parse_is_a_400_not_a_500():
    transport = RecordingTransport()
    raw = b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    request = Request("POST", "/v1/messages", "", Headers([("x-api-key", "client-key")]), read_body(raw))
    response = asyncio.run(
        handle(
            request, {"RELAY_CLIENT_KEYS": "client-key", "ANTHROPIC_API_KEYS": "sk-up"}, Services(transport=transport)
        )
    )
    assert response.status == 400 and transport.sent == []


def test_an_unknown_relay_cache_policy_is_a_named_misconfiguration():
    response, sent = post("/v1/messages", CONVERSATION, {"RELAY_CACHE_POLICY": "sometimes"})
    assert response.status == 500 and sent == []
    assert b"RELAY_CACHE_POLICY must be one of" in response.body


# --- cost: linear in the body, and bounded per request --------------------------------------

MARKED = '{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}'
PLAIN = '{"role":"user","content":[{"type":"text","text":"x"}]}'


def _messages_body(size: int, one: str, metadata: str = "{}") -> bytes:
    """About `size` bytes of messages after a first turn, each `one`: the previous turn's
    tail is near the start, so relay reads every message after it."""
    return (
        '{"model":"claude-sonnet-4-5","max_tokens":1,"system":"'
        + "s" * 8000
        + '","metadata":'
        + metadata
        + ',"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"},'
        + ",".join([one] * max(1, size // (len(one) + 1)))
        + "]}"
    ).encode()


def many_marker_keys(size: int) -> bytes:
    keys = ",".join(['"cache_control":1', r'"cache\u005fcontrol":1'] * (size // 40))
    return _messages_body(size // 100, PLAIN, '{"x":{' + keys + "}}")


def many_marked_messages(size: int) -> bytes:
    return _messages_body(size, MARKED)


def three_markers_many_messages(size: int) -> bytes:
    return _messages_body(size, PLAIN).replace(PLAIN.encode(), MARKED.encode(), 3)


def _steps(body: bytes) -> int:
    """How many Python lines relay runs to read a body and add its markers, in every frame
    (generator expressions too): its work as a number, which a timing on a shared machine
    is not."""
    steps = 0

    def line(frame, event, arg):
        nonlocal steps
        steps += 1
        return line

    previous = sys.gettrace()
    sys.settrace(line)
    try:
        parsed, shape = json_spans.loads(body)
        markers.add_markers(body, parsed, shape, "auto")
    finally:
        sys.settrace(previous)
    return steps


@pytest.mark.parametrize("make", [many_marker_keys, many_marked_messages, three_markers_many_messages])
def test_a_hostile_body_costs_work_linear_in_its_size(make):
    """20,000 cache_control keys (371 KB) once took 13.7 s of CPU; 4,000 marked messages 1 s."""
    small, large = make(256 * 1024), make(1024 * 1024)
    assert 3.5 < len(large) / len(small) < 4.5
    assert _steps(large) < 5 * _steps(small)


def test_the_client_markers_read_are_bounded_whatever_their_number(monkeypatch):
    """The text is searched for markers in C; Python reads at most MAX_MARKERS of them (with
    more, relay adds nothing), and each reads only its own value."""
    read = []
    monkeypatch.setattr(markers, "_marker_ttl", lambda text, index: read.append(index) or 1)
    body = many_marker_keys(1024 * 1024)
    assert body.count(b"cache_control") + body.count(rb"cache\u005fcontrol") > 20_000
    assert run(body)[1] == 0
    assert len(read) == markers.MAX_MARKERS
