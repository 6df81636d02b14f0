"""SSE passes through relay chunk by chunk, and error frames arrive byte-identical.

Unbuffered is proved without timing thresholds: the fake upstream sends its first event,
then withholds the rest until the test has received that first event through relay. A
relay that buffered would deliver nothing, and the read would time out.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai

from .conftest import CLIENT_KEY

FIRST_EVENT_TIMEOUT = httpx.Timeout(20.0)  # well below the fake's 30 s gate limit
MESSAGE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


def test_first_event_arrives_while_the_upstream_withholds_the_rest(relay, anthropic_upstream, tag):
    client = anthropic.Anthropic(base_url=relay.url, api_key=CLIENT_KEY, max_retries=0, timeout=FIRST_EVENT_TIMEOUT)
    gate = f"gate-{tag}"
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-gate": gate},
    ) as stream:
        events = iter(stream)
        first = next(events)
        assert first.type == "message_start"
        assert anthropic_upstream.count > 0
        anthropic_upstream.release(gate)
        rest = [event.type for event in events]

    assert rest[-1] == "message_stop"


def test_each_event_arrives_while_the_upstream_withholds_the_next(relay, anthropic_upstream, tag):
    """Later in the stream too: relay's audit copy of the stream must not hold the
    client's copy back (it reads in larger pieces; the client's must not wait for them)."""
    client = anthropic.Anthropic(base_url=relay.url, api_key=CLIENT_KEY, max_retries=0, timeout=FIRST_EVENT_TIMEOUT)
    gate = f"each-{tag}"
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-gate-each": gate, "x-fake-events": "3"},
    ) as stream:
        events = iter(stream)
        deltas = []
        for event in events:
            if event.type == "content_block_delta":
                deltas.append(event.delta.text)
                if len(deltas) == 3:
                    break
                anthropic_upstream.release(f"{gate}-{len(deltas)}")
        rest = [event.type for event in events]

    assert "".join(deltas) == "Hello from the fake upstream."
    assert rest[-1] == "message_stop"


def test_openai_stream_is_unbuffered_too(relay, openai_upstream, tag):
    client = openai.OpenAI(
        base_url=relay.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=FIRST_EVENT_TIMEOUT
    )
    gate = f"gate-{tag}"
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-gate": gate},
    )
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    openai_upstream.release(gate)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert text == "Hello from the fake upstream."


def _raw_stream(url: str, key_header: dict, scenario: str) -> tuple[int, bytes]:
    headers = {"anthropic-version": "2023-06-01", "x-fake-scenario": scenario, **key_header}
    with httpx.stream("POST", url + "/v1/messages", json=MESSAGE, headers=headers, timeout=30) as response:
        return response.status_code, b"".join(response.iter_raw())


def test_midstream_error_frame_arrives_byte_identical(relay, anthropic_upstream):
    direct = _raw_stream(anthropic_upstream.url, {"x-api-key": "direct"}, "midstream-error")
    relayed = _raw_stream(relay.url, {"x-api-key": CLIENT_KEY}, "midstream-error")

    assert relayed == direct
    status, body = relayed
    assert status == 200
    last = body.decode().strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    assert json.loads(last.split("data: ", 1)[1])["error"]["type"] == "overloaded_error"


def test_sdk_raises_the_midstream_error(relay):
    client = anthropic.Anthropic(base_url=relay.url, api_key=CLIENT_KEY, max_retries=0)
    try:
        with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "midstream-error"},
        ) as stream:
            for _ in stream:
                pass
    except anthropic.APIStatusError as error:
        assert error.body["error"]["type"] == "overloaded_error"
    else:
        raise AssertionError("the stream ended normally; the error frame was lost")


def test_upstream_closing_midstream_ends_the_client_stream(relay):
    with httpx.stream(
        "POST",
        relay.url + "/v1/messages",
        json=MESSAGE,
        timeout=30,
        headers={"x-api-key": CLIENT_KEY, "x-fake-scenario": "close-midstream"},
    ) as response:
        assert response.status_code == 200
        try:
            body = b"".join(response.iter_raw())
        except httpx.HTTPError:
            body = None  # the connection was cut: the client learns the stream broke
    if body is not None:
        assert b"message_stop" not in body  # never a fake normal finish
