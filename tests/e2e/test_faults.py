"""Faults around the Worker: a stalled or broken upstream, a failing D1. Requests are still
answered, in the client's format, and the audit log says what happened."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from devtools.fake_upstream import REPLY_TEXT, FakeUpstream
from devtools.local_worker import LocalWorker

from .conftest import CLIENT_KEY, ISSUED
from .conftest import session_rows as rows

TIMEOUT_SECONDS = 2
UPSTREAM_KEYS = ("sk-ant-fault-key", "sk-oa-fault-key")
ISSUED.extend(UPSTREAM_KEYS)


@pytest.fixture(scope="module")
def upstreams():
    with FakeUpstream("anthropic") as anthropic_fake, FakeUpstream("openai") as openai_fake:
        yield anthropic_fake, openai_fake


def _vars(upstreams, **extra):
    anthropic_fake, openai_fake = upstreams
    return {
        "RELAY_CLIENT_KEYS": CLIENT_KEY,
        "ANTHROPIC_API_KEYS": UPSTREAM_KEYS[0],
        "OPENAI_API_KEYS": UPSTREAM_KEYS[1],
        "UPSTREAM_ANTHROPIC_URL": anthropic_fake.url,
        "UPSTREAM_OPENAI_URL": openai_fake.url,
        **extra,
    }


def test_an_upstream_that_stalls_past_the_timeout_gets_504_in_each_format(upstreams):
    with LocalWorker(_vars(upstreams, RELAY_UPSTREAM_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS))) as worker:
        stalled = {"x-fake-scenario": f"stall-{TIMEOUT_SECONDS * 3}"}
        client = anthropic.Anthropic(base_url=worker.url, api_key=CLIENT_KEY, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=8,
                extra_headers=stalled,
                messages=[{"role": "user", "content": "hi"}],
            )
        assert caught.value.status_code == 504
        assert caught.value.body["error"]["type"] == "timeout_error"
        assert "RELAY_UPSTREAM_TIMEOUT_SECONDS" in caught.value.body["error"]["message"]
        with pytest.raises(openai.APIStatusError) as caught:
            openai.OpenAI(
                base_url=worker.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0
            ).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers=stalled
            )
        assert caught.value.status_code == 504
        # A slow start within the limit is not cut off.
        answer = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=8,
            extra_headers={"x-fake-scenario": "stall-0.5"},
            messages=[{"role": "user", "content": "hi"}],
        )
        assert answer.content[0].text == REPLY_TEXT


@pytest.fixture(scope="module")
def failing_d1(upstreams):
    """A Worker whose D1 has none of relay's tables: every query fails."""
    with LocalWorker(_vars(upstreams), migrate=False) as worker:
        yield worker


def test_requests_are_served_while_d1_refuses_every_write(failing_d1):
    client = anthropic.Anthropic(base_url=failing_d1.url, api_key=CLIENT_KEY, max_retries=0)
    assert (
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        .content[0]
        .text
        == REPLY_TEXT
    )
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert stream.get_final_text() == REPLY_TEXT
    log = _wait_for(failing_d1, "usage row not written", 2)
    assert "2 lost in this isolate" in log
    assert "Traceback" not in log


def test_a_key_that_cannot_be_a_relay_key_is_refused_without_asking_d1(failing_d1):
    """Only keys of the form relay makes (`rk-` and 40 characters) are looked up: any other
    is a 401 at once, so a flood of made-up keys costs D1 nothing. Seen here because this
    D1 fails every query: a key it is asked about gets relay's 500 (it runs after the test
    above, which finds no traceback in the log)."""
    made_up = "sk-ant-api03-" + "x" * 40
    refused = [
        httpx.post(
            failing_d1.url + "/v1/messages",
            headers={"x-api-key": made_up},
            timeout=60,
            json={"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": []},
        ),
        httpx.post(
            failing_d1.url + "/openai/v1/chat/completions",
            timeout=60,
            headers={"authorization": f"Bearer {made_up}"},
            json={"model": "gpt-4o-mini", "messages": []},
        ),
    ]
    assert [answer.status_code for answer in refused] == [401, 401], refused[0].text
    assert [answer.json()["error"]["message"] for answer in refused] == ["invalid relay key"] * 2
    looked_up = httpx.post(
        failing_d1.url + "/v1/messages",
        headers={"x-api-key": "rk-" + "x" * 40},
        timeout=60,
        json={"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": []},
    )
    assert looked_up.status_code == 500


def test_an_upstream_that_drops_the_stream_leaves_a_row_saying_so(relay, tag):
    headers = {
        "x-api-key": CLIENT_KEY,
        "x-claude-code-session-id": tag,
        "x-fake-scenario": "close-midstream",
        "x-fake-events": "3",
    }
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", relay.url + "/v1/messages", headers=headers, json=body) as response:
        try:
            received = b"".join(response.iter_bytes())
        except httpx.HTTPError:  # the broken-off chunked body may surface as a protocol error
            received = b""
    assert b"message_stop" not in received
    [row] = rows(relay, tag, 1)
    assert (row["status"], row["error_type"]) == (200, "upstream_disconnected")
    assert row["input_tokens"] > 0
    # Billed for the output that had passed, not the 1 token message_start counts.
    assert row["usage_basis"] == "estimated" and row["output_tokens"] > 1


def test_an_upstream_that_drops_a_json_answer_midway_gets_502_and_a_row(relay, tag):
    """relay reads a JSON answer whole before passing it on: one that breaks off is
    relay's 502 in the client's format, not a truncated body or the runtime's 500."""
    client = anthropic.Anthropic(base_url=relay.url, api_key=CLIENT_KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "close-midstream", "x-claude-code-session-id": tag},
        )
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"
    [row] = rows(relay, tag, 1)
    assert (row["status"], row["error_type"]) == (502, "api_error")


def _wait_for(worker: LocalWorker, text: str, count: int, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    while worker.log().count(text) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    log = worker.log()
    assert log.count(text) == count, log[-2000:]
    return log
