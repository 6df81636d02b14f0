"""The audit log: every API request through the Worker on workerd leaves one D1 row.

Rows are written after the response (ctx.waitUntil), so tests poll for them. Each test
marks its requests with its own session id (`x-claude-code-session-id`), which relay
records, to find its rows among the session's.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import openai
import pytest

from devtools.fake_upstream import REPLY_TEXT
from tests.clients import wait_for_a_fresh_minute

from .conftest import CLIENT_KEY, audit_rows, create_key
from .conftest import session_rows as rows
from .test_key_limits import CACHE_SECONDS


def _anthropic(relay, session, key=CLIENT_KEY):
    return anthropic.Anthropic(
        base_url=relay.url, api_key=key, max_retries=0, default_headers={"x-claude-code-session-id": session}
    )


def _ask(client, **extra):
    return client.messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], **extra
    )


def test_stream_and_non_stream_rows_hold_the_upstreams_token_counts(relay, tag):
    client = _anthropic(relay, tag)
    message = _ask(client)
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi again"}]
    ) as stream:
        streamed = stream.get_final_message()
    plain, live = rows(relay, tag, 2)
    for row, seen in ((plain, message), (live, streamed)):
        assert row["input_tokens"] == seen.usage.input_tokens
        assert row["output_tokens"] == seen.usage.output_tokens
        assert row["cache_read_tokens"] == 0 and row["status"] == 200 and row["error_type"] is None
        assert row["model_requested"] == row["model_served"] == "claude-sonnet-4-5"
        assert row["key_id"].startswith("static-") and row["client"] == "Anthropic/Python"
        assert row["surface"] == row["provider"] == "anthropic"
        assert row["upstream_key_id"].startswith("anthropic-")
        expected = seen.usage.input_tokens * 3000 + seen.usage.output_tokens * 15000  # nano-dollars
        assert row["cost_nanos"] == expected and row["cost_usd"] == expected / 1e9
        assert 0 <= row["ttfb_ms"] <= row["total_ms"]
    assert (plain["stream"], live["stream"]) == (0, 1)


def test_openai_stream_rows_hold_usage_the_client_did_not_ask_for(relay, openai_upstream, tag):
    client = openai.OpenAI(
        base_url=relay.url + "/openai/v1",
        api_key=CLIENT_KEY,
        max_retries=0,
        default_headers={"x-claude-code-session-id": tag, "x-test-tag": tag},
    )
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}])
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    [seen] = openai_upstream.requests(tag)
    assert seen.json()["stream_options"] == {"include_usage": True}
    [row] = rows(relay, tag, 1)
    reported = chunks[-1].usage
    assert (row["input_tokens"], row["output_tokens"]) == (reported.prompt_tokens, reported.completion_tokens)
    assert row["surface"] == "openai" and row["client"] == "OpenAI/Python" and row["cost_usd"] > 0


@pytest.mark.parametrize(
    "path, body, asked",
    [
        ("/responses", {"input": "hi"}, False),  # Responses streams end with usage unasked (response.completed)
        ("/completions", {"prompt": "hi"}, True),  # legacy Completions define include_usage, as Chat does
    ],
)
def test_relay_asks_for_a_streams_usage_only_where_the_endpoint_defines_the_option(
    relay, openai_upstream, tag, path, body, asked
):
    httpx.post(
        relay.url + "/openai/v1" + path,
        json={"model": "gpt-4o-mini", "stream": True, **body},
        headers={"authorization": f"Bearer {CLIENT_KEY}", "x-test-tag": tag},
    )
    [seen] = openai_upstream.requests(tag)
    assert seen.json().get("stream_options") == ({"include_usage": True} if asked else None)


def test_midstream_error_and_upstream_errors_leave_rows(relay, tag):
    client = _anthropic(relay, tag)
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-scenario": "midstream-error"},
        ) as stream,
    ):
        stream.get_final_message()
    with pytest.raises(anthropic.InternalServerError):
        _ask(client, extra_headers={"x-fake-scenario": "status-500"})
    # A stream's row may be written after a later request's (it is metered off the client's path).
    midstream, failed = sorted(rows(relay, tag, 2), key=lambda row: row["status"])
    assert (midstream["status"], midstream["error_type"]) == (200, "overloaded_error")
    assert midstream["input_tokens"] > 0
    assert (failed["status"], failed["error_type"]) == (500, "api_error")


def test_requests_relay_refuses_leave_rows(relay, anthropic_upstream, tag):
    with pytest.raises(anthropic.AuthenticationError):
        _ask(_anthropic(relay, tag, key="not-a-relay-key"))
    haiku_only = create_key(relay, allowed_models=["claude-haiku-*"], billing_tag="team-a", rpm_limit=10)
    limited = _anthropic(relay, tag, key=haiku_only["key"])
    wait_for_a_fresh_minute()  # the 403 and the 12 below in one of the limiter's minutes
    with pytest.raises(anthropic.PermissionDeniedError):
        _ask(limited)
    with pytest.raises(anthropic.RateLimitError):
        for _ in range(12):
            limited.messages.create(
                model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    # The 403 counted against the key's 10 a minute too: 9 more pass, the 10th is refused.
    found = rows(relay, tag, 2 + 10)
    assert (found[0]["status"], found[0]["key_id"], found[0]["error_type"]) == (401, None, "authentication_error")
    assert (found[1]["status"], found[1]["key_id"], found[1]["billing_tag"]) == (403, haiku_only["id"], "team-a")
    assert [row["status"] for row in found[2:]] == [200] * 9 + [429]
    assert found[-1]["error_type"] == "rate_limit_error" and found[-1]["upstream_key_id"] is None


def test_concurrent_streams_leave_exactly_one_row_each(relay, tag):
    client = _anthropic(relay, tag)

    def one(_):
        with client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-events": "5", "x-fake-pace-ms": "20"},
        ) as stream:
            return stream.get_final_message().usage.output_tokens

    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(one, range(24)))
    found = rows(relay, tag, 24)
    assert sorted(row["output_tokens"] for row in found) == sorted(outputs)
    assert all(row["status"] == 200 and row["error_type"] is None for row in found)


def test_a_client_that_hangs_up_mid_stream_cancels_the_upstream_request_and_leaves_a_row(
    relay, anthropic_upstream, tag
):
    headers = {
        "x-api-key": CLIENT_KEY,
        "x-claude-code-session-id": tag,
        "x-test-tag": tag,
        "x-fake-events": "40",
        "x-fake-pace-ms": "100",
    }  # four seconds of stream
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", relay.url + "/v1/messages", headers=headers, json=body) as response:
        for line in response.iter_lines():
            if "content_block_delta" in line:
                break  # and hang up
    [row] = rows(relay, tag, 1)
    [seen] = anthropic_upstream.requests(tag)
    assert (row["status"], row["stream"], row["error_type"]) == (200, 1, "client_disconnected")
    assert row["input_tokens"] > 0 and row["total_ms"] < 3000
    assert seen.cut_off  # relay closed the upstream connection: the provider stops generating


def _estimated_tokens(deltas: int) -> int:
    """relay's count of the fake's first `deltas` text deltas (relay/usage/estimate.py): a token for
    four bytes, at least one a delta. Paced, the fake sends its reply's text, then " ."s."""
    return -(-len(REPLY_TEXT.encode()) // 4) + deltas - 1


def test_a_client_that_hangs_up_mid_stream_is_billed_for_the_output_that_had_passed(relay, anthropic_upstream, tag):
    """Every Esc in Claude Code is such a hang-up. Its row used to bill the input alone (the
    output count message_start gives, 1: the final count never came), and a client could
    take most of an answer for free. Now it counts what relay had received of the stream
    when it aborted it: at least what the client took, at most what the provider sent."""
    headers = {
        "x-api-key": CLIENT_KEY,
        "x-claude-code-session-id": tag,
        "x-test-tag": tag,
        "x-fake-events": "50",
        "x-fake-pace-ms": "50",
    }
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    taken = 0
    with httpx.stream("POST", relay.url + "/v1/messages", headers=headers, json=body) as response:
        for line in response.iter_lines():
            taken += line.startswith("data:") and "content_block_delta" in line
            if taken == 20:
                break  # and hang up
    [row] = rows(relay, tag, 1)
    [seen] = anthropic_upstream.requests(tag)
    assert seen.cut_off and seen.deltas_sent < 50
    assert (row["error_type"], row["usage_basis"]) == ("client_disconnected", "estimated")
    assert _estimated_tokens(taken) <= row["output_tokens"] <= _estimated_tokens(seen.deltas_sent)
    assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 3 + row["output_tokens"] * 15) / 1e6)


def test_an_upstream_answer_without_a_body_leaves_a_row(relay, anthropic_upstream, tag):
    headers = {"x-api-key": CLIENT_KEY, "x-claude-code-session-id": tag, "x-test-tag": tag}
    answer = httpx.head(relay.url + "/v1/models", headers=headers)
    [seen] = anthropic_upstream.requests(tag)
    [row] = rows(relay, tag, 1)
    assert seen.method == "HEAD" and answer.status_code == row["status"] == 200
    assert (row["method"], row["path"], row["stream"]) == ("HEAD", "/v1/models", 0)


def test_huge_model_names_cost_no_other_request_its_row_nor_a_key_its_budget(relay, anthropic_upstream, tag):
    """Rows are written in groups, one D1 statement each, and D1 refuses a value over about
    2 MB: 403s for three 0.8 MB model names, ending as a priced stream did, once sank the
    whole group, the stream's row with it, and the key went on past its budget."""
    budgeted = create_key(relay, monthly_budget_usd=0.0001, allowed_models=["claude-sonnet-4-5"])
    client = _anthropic(relay, tag, key=budgeted["key"])
    huge = "x" * 800_000

    def refused(_):
        return httpx.post(
            relay.url + "/v1/messages",
            json={"model": huge, "max_tokens": 8, "messages": []},
            headers={"x-api-key": budgeted["key"], "x-claude-code-session-id": tag},
            timeout=60,
        )

    gate = f"{tag}-gate"
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fake-gate": gate},
    ) as stream:
        assert next(iter(stream)).type == "message_start"  # held open by the fake, not yet priced
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(refused, range(3)))
        anthropic_upstream.release(gate)  # the stream ends while the 403s' rows wait for others
        served = stream.get_final_message()
    assert [answer.status_code for answer in answers] == [403] * 3, (
        [answer.text[:300] for answer in answers],
        relay.log()[-3000:],
    )
    message = answers[0].json()["error"]["message"]
    assert message.startswith(f"relay key {budgeted['id']} may not use model xxx") and len(message) <= 512

    found = rows(relay, tag, 4)
    assert sorted(row["status"] for row in found) == [200] + [403] * 3
    assert all(len(row["model_requested"]) <= 256 for row in found)
    [priced] = [row for row in found if row["status"] == 200]
    assert priced["cost_usd"] > 0.0001 and priced["output_tokens"] == served.usage.output_tokens
    time.sleep(CACHE_SECONDS + 0.5)  # the key's spend is read from D1 again
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(client)
    assert caught.value.status_code == 402
    # The refused row keeps what relay had read: the model asked for.
    [refused_row] = audit_rows(relay, f"session_id = '{tag}' AND status = 402", 1)
    assert (refused_row["model_requested"], refused_row["key_id"]) == ("claude-sonnet-4-5", budgeted["id"])
