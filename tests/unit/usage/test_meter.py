"""Usage read from response bodies however the bytes are split, and the row it makes."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.text_bounds import FIELD_CHARS
from relay.services import Services
from relay.usage import pricing
from relay.usage.meter import (
    MAX_JSON_BYTES,
    MAX_ROWS_PER_WRITE,
    WRITE_ATTEMPTS,
    Exchange,
    Meter,
    ask_for_usage,
    client_family,
)
from tests.fakes.platform import SqliteDatabase

ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"claude-sonnet-4-5",'
    b'"usage":{"input_tokens":100,"cache_creation_input_tokens":2000,"cache_read_input_tokens":30000,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":1500,"ephemeral_1h_input_tokens":500},"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"h\xc3\xa9"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OPENAI_STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}\r\n\r\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":1000,"completion_tokens":7,"prompt_tokens_details":{"cached_tokens":600}}}\r\n\r\n'
    b"data: [DONE]\r\n\r\n"
)


def _meter(surface: str, status: int = 200, content_type: str = "text/event-stream", db=None) -> Meter:
    exchange = Exchange(
        started=1_700_000_000.0,
        surface=surface,
        method="POST",
        path="/v1/messages",
        model_requested="asked-model",
        stream=True,
    )
    return Meter(exchange, status, content_type, Services(transport=None, db=db, clock=lambda: 1_700_000_001.5))


def _splits(body: bytes):
    """Every way of cutting the body in two, and in one-byte pieces."""
    for cut in range(len(body) + 1):
        yield [body[:cut], body[cut:]]
    yield [body[i : i + 1] for i in range(len(body))]


@pytest.mark.parametrize("pieces", list(_splits(ANTHROPIC_STREAM)))
def test_anthropic_stream_usage_at_any_byte_boundary(pieces):
    meter = _meter("anthropic")
    for piece in pieces:
        meter.feed(piece)
    row = meter.row(client_gone=False, now=1_700_000_002.0)
    assert (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_creation_tokens"],
        row["cache_creation_1h_tokens"],
        row["cache_read_tokens"],
    ) == (100, 42, 2000, 500, 30000)
    assert row["model_served"] == "claude-sonnet-4-5" and row["error_type"] is None


@pytest.mark.parametrize("pieces", list(_splits(OPENAI_STREAM)))
def test_openai_stream_usage_at_any_byte_boundary(pieces):
    meter = _meter("openai")
    for piece in pieces:
        meter.feed(piece)
    row = meter.row(client_gone=False, now=1_700_000_002.0)
    # Prompt tokens include cached ones; the row bills each input token once.
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (400, 600, 7)
    assert row["model_served"] == "gpt-4o-mini" and row["error_type"] is None


def test_cost_and_savings_follow_the_price_table():
    row = _meter("anthropic")
    row.feed(ANTHROPIC_STREAM)
    row = row.row(False, 1_700_000_002.0)
    # Sonnet: $3 in, $15 out, 5m write $3.75, 1h write $6, read $0.30 per million.
    expected = (100 * 3 + 42 * 15 + 1500 * 3.75 + 500 * 6 + 30000 * 0.3) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    saved = (30000 * (3 - 0.3) - 1500 * (3.75 - 3) - 500 * (6 - 3)) / 1e6
    assert row["cache_savings_usd"] == pytest.approx(saved)


def test_midstream_error_disconnects_and_truncation_are_told_apart():
    error = _meter("anthropic")
    error.feed(
        ANTHROPIC_STREAM.split(b"event: message_delta")[0]
        + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"x"}}\n\n'
    )
    assert error.row(False, 1_700_000_002.0)["error_type"] == "overloaded_error"
    cut = _meter("anthropic")
    cut.feed(ANTHROPIC_STREAM[:300])
    assert cut.row(False, 1_700_000_002.0)["error_type"] == "upstream_disconnected"
    gone = _meter("anthropic")
    gone.feed(ANTHROPIC_STREAM[:300])
    row = gone.row(True, 1_700_000_002.0)
    assert row["error_type"] == "client_disconnected" and row["input_tokens"] == 100


def test_json_bodies_and_errors():
    ok = _meter("anthropic", content_type="application/json")
    ok.feed(json.dumps({"model": "claude-haiku-4-5", "usage": {"input_tokens": 5, "output_tokens": 6}}).encode())
    row = ok.row(False, 1_700_000_002.0)
    assert (row["input_tokens"], row["output_tokens"], row["model_served"]) == (5, 6, "claude-haiku-4-5")
    refused = _meter("openai", status=429, content_type="application/json")
    refused.feed(b'{"error":{"message":"slow down","type":"rate_limit_exceeded","code":"rate_limit_exceeded"}}')
    row = refused.row(False, 1_700_000_002.0)
    assert row["status"] == 429 and row["error_type"] == "rate_limit_exceeded"
    assert row["input_tokens"] is None and row["cost_usd"] is None


def test_unknown_model_costs_null_not_zero():
    meter = _meter("anthropic", content_type="application/json")
    meter.feed(b'{"model":"someone-elses-model","usage":{"input_tokens":5,"output_tokens":6}}')
    assert meter.row(False, 1_700_000_002.0)["cost_usd"] is None


def test_embeddings_are_priced_by_their_input_tokens():
    """OpenAI's embeddings answer reports prompt tokens only: a budget key may use them."""
    meter = _meter("openai", content_type="application/json")
    meter.feed(
        b'{"object":"list","data":[],"model":"text-embedding-3-small",'
        b'"usage":{"prompt_tokens":1000000,"total_tokens":1000000}}'
    )
    assert meter.row(False, 1_700_000_002.0)["cost_usd"] == pytest.approx(0.02)
    assert pricing.price_of("text-embedding-3-large").input == 0.13
    assert pricing.price_of("text-embedding-ada-002").input == 0.1


def test_a_provider_price_applies_only_to_what_that_provider_serves():
    overrides = pricing.parse_overrides(
        '{"aws-east/claude-sonnet-4*": {"input": 3.3, "output": 16.5}, "claude-sonnet-4*": {"input": 3, "output": 15}}'
    )
    assert pricing.price_of("claude-sonnet-4-5", overrides, "aws-east").input == 3.3
    assert pricing.price_of("claude-sonnet-4-5", overrides, "anthropic").input == 3
    assert pricing.price_of("claude-sonnet-4-5", overrides).input == 3
    assert pricing.price_of("claude-haiku-4-5", overrides, "aws-east").input == 1  # the built-in table


def test_price_overrides_come_first_and_are_checked():
    overrides = pricing.parse_overrides('{"claude-sonnet-4*": {"input": 1, "output": 2}}')
    assert pricing.price_of("claude-sonnet-4-5", overrides).cache_read == pytest.approx(0.1)
    assert pricing.price_of("claude-sonnet-4-5").input == 3
    for bad in ("[1]", '{"x": {"input": -1, "output": 1}}', '{"x": {"input": 1}}', '{"x": {"inptu": 1}}'):
        with pytest.raises(ValueError):
            pricing.parse_overrides(bad)


def test_rows_reach_the_database_and_a_failing_database_is_counted():
    db = SqliteDatabase()
    meter = _meter("anthropic", db=db)
    meter.feed(ANTHROPIC_STREAM)
    asyncio.run(meter.finish(False))
    [row] = asyncio.run(db.all("SELECT * FROM usage"))
    assert row["ttfb_ms"] == 1500 and row["total_ms"] == 1500 and row["output_tokens"] == 42

    class Down:
        async def run(self, sql, params=()):
            raise ConnectionError("D1 unavailable")

    broken = _meter("anthropic", db=Down())
    broken.feed(ANTHROPIC_STREAM)
    asyncio.run(broken.finish(False))
    assert broken._services.state.usage_write_failures == 1


class _CountingDatabase(SqliteDatabase):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.calls: list[int] = []  # rows per call
        self.fail = fail

    async def run(self, sql, params=()):
        self.calls.append(len(json.loads(params[0])))  # insert_usage: the rows as one JSON array
        if self.fail:
            raise ConnectionError("D1 unavailable")
        await super().run(sql, params)


def _requests_ending_together(db, count, path=lambda n: "/v1/messages"):
    async def end_them():
        services = Services(transport=None, db=db, clock=lambda: 1_700_000_001.5)
        exchanges = [
            Exchange(started=1_700_000_000.0, surface="anthropic", method="POST", path=path(n)) for n in range(count)
        ]
        await asyncio.gather(
            *(Meter(exchange, 200, "text/event-stream", services).finish(False) for exchange in exchanges)
        )
        return services.state

    return asyncio.run(end_them())


def test_rows_of_requests_ending_together_are_written_in_groups():
    db = _CountingDatabase()
    _requests_ending_together(db, 1)
    _requests_ending_together(db, MAX_ROWS_PER_WRITE + 5)
    assert db.calls == [1, MAX_ROWS_PER_WRITE, 5]
    assert len(asyncio.run(db.all("SELECT * FROM usage"))) == MAX_ROWS_PER_WRITE + 6

    down = _CountingDatabase(fail=True)
    state = _requests_ending_together(down, 5)
    assert down.calls[0] == 5 and state.usage_write_failures == 5 and state.usage_group is None


class _RefusingDatabase(_CountingDatabase):
    """Refuses every statement holding a row for the path "/refused" (as D1 refuses a
    statement with one value too long), and writes the others."""

    async def run(self, sql, params=()):
        if "/refused" in params[0]:
            self.calls.append(len(json.loads(params[0])))
            raise ValueError("string or blob too big")
        await super().run(sql, params)


def test_a_row_the_database_refuses_costs_no_other_row_its_place():
    db = _RefusingDatabase()
    state = _requests_ending_together(db, MAX_ROWS_PER_WRITE, lambda n: "/refused" if n == 37 else f"/v1/{n}")
    written = asyncio.run(db.all("SELECT path FROM usage"))
    assert sorted(row["path"] for row in written) == sorted(f"/v1/{n}" for n in range(MAX_ROWS_PER_WRITE) if n != 37)
    assert state.usage_write_failures == 1
    assert len(db.calls) <= WRITE_ATTEMPTS and db.calls[0] == MAX_ROWS_PER_WRITE


def test_a_database_that_refuses_everything_gets_a_bounded_number_of_calls():
    down = _CountingDatabase(fail=True)
    state = _requests_ending_together(down, MAX_ROWS_PER_WRITE)
    assert len(down.calls) == WRITE_ATTEMPTS
    assert state.usage_write_failures == MAX_ROWS_PER_WRITE


def test_a_row_keeps_a_bounded_valid_text_of_what_the_client_sent():
    """A 2.5 MB model name alone is more than D1 takes in one value; a lone surrogate
    (JSON lets a client send one) is no UTF-8 text."""
    huge = "m" * 2_500_000
    exchange = Exchange(
        started=1_700_000_000.0,
        surface="anthropic",
        method="POST",
        path="/v1/" + "p" * 5000,
        client="c" * 5000,
        billing_tag="t" * 5000,
        session_id="\ud800" + "s" * 5000,
        model_requested=huge,
        stream=True,
    )
    db = SqliteDatabase()
    meter = Meter(exchange, 403, "application/json", Services(transport=None, db=db, clock=lambda: 1_700_000_001.0))
    meter.feed(b'{"type":"error","error":{"type":"' + b"e" * 5000 + b'","message":"no"}}')
    asyncio.run(meter.finish(False))
    [row] = asyncio.run(db.all("SELECT * FROM usage"))
    for name in ("path", "client", "billing_tag", "session_id", "model_requested", "error_type"):
        assert 200 <= len(row[name]) <= FIELD_CHARS and row[name].endswith("…"), name
    assert row["model_requested"].startswith("mmm") and row["session_id"].startswith("\ufffd")


def test_openai_streams_are_asked_for_usage_unless_the_client_said_no():
    body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"\xc3\xa9"}]}'
    asked = json.loads(ask_for_usage(body, json.loads(body)))
    assert asked["stream_options"] == {"include_usage": True}
    assert list(asked) == ["model", "stream", "messages", "stream_options"]
    assert asked["messages"][0]["content"] == "é"
    declined = b'{"model":"m","stream":true,"stream_options":{"include_usage":false}}'
    assert ask_for_usage(declined, json.loads(declined)) is declined


@pytest.mark.parametrize(
    "agent, family",
    [
        ("claude-cli/2.1.331 (external, cli)", "claude-cli"),
        ("Anthropic/Python 0.75.0", "Anthropic/Python"),
        ("OpenAI/Python 2.8.0", "OpenAI/Python"),
        ("curl/8.5.0", "curl"),
        ("", None),
    ],
)
def test_client_family(agent, family):
    assert client_family(agent) == family


def test_only_the_row_that_opens_a_group_leaves_work_to_await():
    db = _CountingDatabase()

    async def close_three():
        services = Services(transport=None, db=db, clock=lambda: 1_700_000_001.5)
        exchange = Exchange(started=1_700_000_000.0, surface="anthropic", method="POST", path="/v1/messages")
        works = [Meter(exchange, 200, "application/json", services).close(False) for _ in range(3)]
        assert works[1] is None and works[2] is None
        await works[0]

    asyncio.run(close_three())
    assert db.calls == [3]


def test_a_body_that_broke_off_unread_says_connection_lost():
    """The adapter cannot tell which side left a body it passes on unread (a file)."""
    meter = _meter("anthropic", content_type="application/octet-stream")
    meter.feed(b"")
    meter.broke_off()
    assert meter.row(False, 1_700_000_002.0)["error_type"] == "connection_lost"
    assert (
        _meter("anthropic", content_type="application/octet-stream").row(False, 1_700_000_002.0)["error_type"] is None
    )


def _anthropic_delta(text: str, kind: str = "text_delta", field: str = "text") -> bytes:
    payload = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: text}}
    return b"event: content_block_delta\ndata: " + json.dumps(payload).encode() + b"\n\n"


def test_a_stream_cut_short_bills_the_output_that_passed_and_says_it_is_relays_count():
    """message_start reports one output token; the deltas that passed hold 3 + 1 + 2 more."""
    meter = _meter("anthropic", db=SqliteDatabase())
    meter.feed(ANTHROPIC_STREAM.split(b"event: content_block_delta")[0])
    for text in ("Hello world!", "é", "a" * 5):
        meter.feed(_anthropic_delta(text))
    row = meter.row(True, 1_700_000_002.0)
    assert (row["error_type"], row["usage_basis"]) == ("client_disconnected", "estimated")
    assert (row["input_tokens"], row["output_tokens"]) == (100, 6)
    expected = (100 * 3 + 6 * 15 + 1500 * 3.75 + 500 * 6 + 30000 * 0.3) / 1e6
    assert row["cost_usd"] == pytest.approx(expected)
    asyncio.run(meter.finish(True))
    [stored] = asyncio.run(meter._services.db.all("SELECT usage_basis, output_tokens FROM usage"))
    assert stored == {"usage_basis": "estimated", "output_tokens": 6}


def test_an_upstream_that_broke_off_mid_stream_bills_what_passed_too():
    meter = _meter("anthropic")
    meter.feed(ANTHROPIC_STREAM.split(b"event: content_block_delta")[0] + _anthropic_delta("x" * 40))
    row = meter.row(False, 1_700_000_002.0)
    assert (row["error_type"], row["usage_basis"], row["output_tokens"]) == ("upstream_disconnected", "estimated", 10)


def test_a_stream_whose_final_count_arrived_is_not_estimated_even_if_cut_after_it():
    meter = _meter("anthropic")
    meter.feed(ANTHROPIC_STREAM.split(b"event: message_stop")[0])
    row = meter.row(True, 1_700_000_002.0)
    assert (row["output_tokens"], row["usage_basis"], row["error_type"]) == (42, None, "client_disconnected")


def test_a_whole_stream_is_billed_as_reported():
    meter = _meter("anthropic")
    meter.feed(ANTHROPIC_STREAM)
    assert meter.row(False, 1_700_000_002.0)["usage_basis"] is None


def test_an_openai_stream_cut_short_bills_its_output_and_leaves_the_input_unknown():
    """Chat Completions report usage only in their last chunk: the input is unknown."""
    chunk = OPENAI_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n"  # its delta: "hi"
    meter = _meter("openai")
    meter.feed(chunk * 3)
    row = meter.row(True, 1_700_000_002.0)
    assert (row["input_tokens"], row["output_tokens"], row["usage_basis"]) == (None, 3, "estimated")
    assert row["cost_usd"] == pytest.approx(3 * 0.6 / 1e6)  # gpt-4o-mini: $0.60 per million out


def test_an_openai_stream_that_ended_without_usage_is_not_estimated():
    """The client said include_usage: false, and the stream ended: nothing was cut short."""
    meter = _meter("openai")
    meter.feed(OPENAI_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\ndata: [DONE]\r\n\r\n")
    row = meter.row(False, 1_700_000_002.0)
    assert (row["output_tokens"], row["usage_basis"], row["error_type"]) == (None, None, None)


def test_a_json_answer_too_large_to_read_says_its_usage_is_unread():
    passed_on = _meter("openai", content_type="application/json")
    passed_on.too_large()
    passed_on.feed(b"")
    too_big = _meter("openai", content_type="application/json")
    too_big.feed(b'{"usage": {"prompt_tokens": 3}, "data": "' + b"x" * MAX_JSON_BYTES + b'"}')
    for meter in (passed_on, too_big):
        row = meter.row(False, 1_700_000_002.0)
        assert (row["usage_basis"], row["input_tokens"], row["cost_usd"]) == ("unread", None, None)
        assert row["error_type"] is None
