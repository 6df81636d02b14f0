"""A relay key's monthly budget and its limit on open streams, through the Worker on workerd."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from devtools.fake_upstream import REPLY_TEXT

from .conftest import create_key
from .conftest import session_rows as rows

CACHE_SECONDS = 2  # RELAY_KEY_CACHE_SECONDS in conftest


def _client(relay, key, tag):
    return anthropic.Anthropic(
        base_url=relay.url,
        api_key=key,
        max_retries=0,
        default_headers={"x-test-tag": tag, "x-claude-code-session-id": tag},
    )


def _ask(client):
    return client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_a_key_that_has_spent_its_budget_is_refused_in_each_apis_format(relay, anthropic_upstream, tag):
    # One fake request costs about $0.0003 at Sonnet prices: the budget allows one.
    created = create_key(relay, monthly_budget_usd=0.0001)
    client = _client(relay, created["key"], tag)
    assert _ask(client).content[0].text == REPLY_TEXT
    [row] = rows(relay, tag, 1)
    assert row["cost_usd"] > 0.0001
    time.sleep(CACHE_SECONDS + 0.5)

    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(client)
    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"
    assert "monthly budget" in caught.value.body["error"]["message"]
    with pytest.raises(openai.APIStatusError) as caught:
        openai.OpenAI(base_url=relay.url + "/openai/v1", api_key=created["key"], max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402 and caught.value.code == "insufficient_quota"
    assert len(anthropic_upstream.requests(tag)) == 1


def test_a_key_may_hold_only_its_number_of_streams_open(relay, anthropic_upstream, tag):
    client = _client(relay, create_key(relay, max_concurrent_streams=2)["key"], tag)
    gates = [f"{tag}-{n}" for n in range(2)]
    streams = [
        client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-gate": gate},
        )
        for gate in gates
    ]
    opened = [stream.__enter__() for stream in streams]
    for events in opened:  # both streams have started and are held open by the fake
        assert next(iter(events)).type == "message_start"

    with (
        pytest.raises(anthropic.RateLimitError) as caught,
        client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as third,
    ):
        third.get_final_message()
    assert "2 streams open" in caught.value.body["error"]["message"]
    assert caught.value.response.headers["retry-after"] == "1"
    assert _ask(client).content[0].text == REPLY_TEXT  # a non-streaming request needs no slot

    for gate, stream, events in zip(gates, streams, opened):
        anthropic_upstream.release(gate)
        assert events.get_final_text() == REPLY_TEXT
        stream.__exit__(None, None, None)
    rows(relay, tag, 4)  # both streams' rows are written, so their slots are free again
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    ) as fourth:
        assert fourth.get_final_text() == REPLY_TEXT
