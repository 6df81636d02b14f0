"""How answers reach the client and what their tap sees (relay.pipeline.deliver), over a fake of the
runtime's stream operations that counts Python's wake-ups (tests/fakes/streams.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from relay.http.messages import Headers, Response
from relay.pipeline import deliver as delivery
from relay.pipeline.deliver import chunks, deliver
from relay.services import Background
from tests.fakes.streams import BrokenOff, FakeReader, FakeStream, FakeStreams, Upstream

SSE = [("content-type", "text/event-stream; charset=utf-8")]
JSON = [("content-type", "application/json")]


class RecordingTap:
    """What deliver tells the tap: the bytes fed, a body that broke off, how it finished."""

    def __init__(self, status: int = 200):
        self.status = status
        self.fed: list[bytes] = []
        self.broken = False
        self.unread = False
        self.finished = None  # client_gone, once finished
        self.written = False
        self.first_at: list[float] = []  # the arrival times it was told

    def feed(self, chunk: bytes, at: float | None = None) -> None:
        self.fed.append(chunk)
        if at is not None:
            self.first_at.append(at)

    def broke_off(self) -> None:
        self.broken = True

    def too_large(self) -> None:
        self.unread = True

    async def finish(self, client_gone: bool) -> None:
        self.finished = client_gone

    def close(self, client_gone: bool):
        self.finished = client_gone

        async def write():
            self.written = True

        return write()


def _events(count: int) -> list[bytes]:
    first = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    deltas = [b'event: content_block_delta\ndata: {"n":%d}\n\n' % n for n in range(count - 2)]
    return [first, *deltas, b'event: message_stop\ndata: {"type":"message_stop"}\n\n']


def _deliver(body, headers=SSE, tap=None, path="/v1/messages", streams=None, status=200):
    """deliver()'s answer once every piece of work it deferred has ended, and the fake."""
    streams = streams or FakeStreams()
    background = Background()

    async def run():
        answer = await deliver(Response(status, list(headers), body, tap), path, streams, background)
        await background.settle()
        return answer

    return asyncio.run(asyncio.wait_for(run(), 5)), streams


def test_an_event_streams_client_gets_every_byte_and_the_tap_its_copy():
    events, tap, upstream = _events(5), RecordingTap(), Upstream(_events(5))
    answer, streams = _deliver(upstream.body(), tap=tap)
    [client] = streams.clients
    assert answer.body is client and answer.headers == SSE and streams.observed == 1
    assert client.received == events and client.ended
    assert b"".join(tap.fed) == b"".join(events) and tap.finished is False
    assert streams.whole_reads == 0 and not upstream.aborted


@pytest.mark.parametrize("count", [3, 50, 500])
def test_an_event_stream_enters_python_once_whatever_its_length_and_wakes_no_task(count):
    """When it has ended: JavaScript passes and copies its chunks (native_streams.mjs) and
    calls into Python with what passed."""
    answer, streams = _deliver(Upstream(_events(count)).body(), tap=RecordingTap())
    assert streams.calls == 1 and streams.wakeups == 0 and len(streams.clients[0].received) == count


def test_the_tap_learns_when_the_first_chunk_arrived_not_when_python_woke():
    tap = RecordingTap()
    _, streams = _deliver(Upstream(_events(20), gap=0.01).body(), tap=tap)
    arrivals = streams.clients[0].received_at
    assert tap.first_at == [arrivals[0]] and arrivals[0] < arrivals[-1]


def test_a_client_that_hangs_up_mid_stream_aborts_the_upstream_and_the_tap_keeps_what_had_come(capsys):
    """The copy has every event the provider sent until the abort took effect (here, at once)."""
    upstream, tap = Upstream(_events(6), ending="hang"), RecordingTap()
    _, streams = _deliver(upstream.body(), tap=tap, streams=FakeStreams(hangs_up_after=2))
    assert upstream.aborted and tap.finished is True and streams.calls == 1
    assert len(streams.clients[0].received) == 2 and b"".join(tap.fed) == b"".join(_events(6)[:2])
    assert capsys.readouterr().out == ""  # the abort was relay's: nothing went wrong upstream


def test_an_upstream_that_breaks_off_mid_stream_is_not_blamed_on_the_client(capsys):
    upstream, tap = Upstream(_events(6), ending="break"), RecordingTap()
    _, streams = _deliver(upstream.body(), tap=tap)
    [client] = streams.clients
    assert client.received == _events(6) and client.failed
    assert tap.finished is False and not upstream.aborted
    assert b"".join(tap.fed) == b"".join(_events(6))  # what came before the break
    assert "upstream body ended with BrokenOff" in capsys.readouterr().out


def test_an_upstream_that_breaks_off_before_its_first_event_is_whole_leaves_what_came(capsys):
    upstream, tap = Upstream([b"event: message_start\ndata: {"], ending="break"), RecordingTap()
    _deliver(upstream.body(), tap=tap)
    assert tap.fed == [b"event: message_start\ndata: {"] and tap.finished is False
    assert "upstream body ended with BrokenOff" in capsys.readouterr().out


DOCUMENT = json.dumps({"type": "message", "usage": {"input_tokens": 3}}).encode()


def test_a_json_answer_of_a_declared_length_is_read_whole_natively_and_passed_on_as_bytes():
    tap = RecordingTap()
    headers = [*JSON, ("content-length", str(len(DOCUMENT)))]
    answer, streams = _deliver(Upstream([DOCUMENT[:10], DOCUMENT[10:]]).body(), headers=headers, tap=tap)
    assert answer.body == DOCUMENT and tap.fed == [DOCUMENT] and tap.finished is False and tap.written
    assert streams.whole_reads == 1 and streams.clients == []
    assert streams.wakeups == 1


@pytest.mark.parametrize(
    ("headers", "whole"),
    [
        ([*JSON, ("content-length", "30")], True),
        ([("content-type", "application/vnd.api+json; charset=utf-8"), ("content-length", "30")], True),
        ([*JSON, ("content-length", str(delivery.WHOLE_JSON_BYTES))], True),
        ([*JSON, ("content-length", str(delivery.WHOLE_JSON_BYTES + 1))], False),
        (JSON, False),
        ([*JSON, ("content-length", "30"), ("content-encoding", "gzip")], False),
        ([*JSON, ("content-length", "30"), ("content-encoding", " Identity ")], True),
        ([*SSE, ("content-length", "30")], False),
        ([("content-type", "application/octet-stream"), ("content-length", "30")], False),
        ([("content-length", "30")], False),
    ],
)
def test_reads_whole_says_which_answers_one_native_read_takes(headers, whole):
    """What the adapter's transport asks of each answer's head: those it says yes to are the
    ones deliver would read whole in one call (the transport then reads them with the head)."""
    assert delivery.reads_whole(Headers(headers)) is whole
    if whole:
        _, streams = _deliver(Upstream([b"{}"]).body(), headers=headers, tap=RecordingTap())
        assert streams.whole_reads == 1


def test_a_json_answer_the_transport_read_with_its_head_costs_no_wake_up():
    tap = RecordingTap()
    answer, streams = _deliver(DOCUMENT, headers=[*JSON, ("content-length", str(len(DOCUMENT)))], tap=tap)
    assert answer.body == DOCUMENT and tap.fed == [DOCUMENT] and tap.finished is False and tap.written
    assert streams.wakeups == 0 and streams.clients == []


@pytest.mark.parametrize(
    "headers", [JSON, [*JSON, ("content-encoding", "gzip"), ("content-length", "30")]], ids=["chunked", "content-coded"]
)
def test_a_json_answer_of_unknown_length_is_read_a_batch_at_a_time(headers):
    """A content-coded answer's content-length counts the coded bytes, not those the runtime
    gives once it has decoded them: its length is unknown too."""
    tap = RecordingTap()
    answer, streams = _deliver(Upstream([DOCUMENT[:10], DOCUMENT[10:]]).body(), headers=headers, tap=tap)
    assert answer.body == DOCUMENT and tap.fed == [DOCUMENT] and tap.written and not tap.unread
    assert streams.whole_reads == 0 and streams.clients == [] and streams.wakeups == 1  # one batch, short: the end


def test_a_long_json_answer_of_unknown_length_wakes_python_once_a_batch(monkeypatch):
    monkeypatch.setattr(delivery, "BATCH_BYTES", 1000)
    document = b'{"data": "' + b"x" * 3480 + b'"}'
    answer, streams = _deliver(
        Upstream([document[i : i + 100] for i in range(0, len(document), 100)]).body(), headers=JSON, tap=RecordingTap()
    )
    assert answer.body == document and streams.wakeups == 4  # 3 batches of 1000 bytes, then the last 492


def test_a_chunked_json_answer_past_the_bound_is_passed_on_unread(monkeypatch):
    """Read up to just past WHOLE_JSON_BYTES: the client gets what was read, then the rest
    the runtime pipes, every byte in order; the tap holds none of it."""
    monkeypatch.setattr(delivery, "BATCH_BYTES", 1000)
    monkeypatch.setattr(delivery, "WHOLE_JSON_BYTES", 4000)
    parts = [bytes([65 + n % 26]) * 100 for n in range(100)]  # 10,000 bytes
    upstream, tap = Upstream(parts), RecordingTap()
    answer, streams = _deliver(upstream.body(), headers=JSON, tap=tap)
    [client] = streams.clients
    assert answer.body is client and b"".join(client.received) == b"".join(parts) and client.ended
    assert tap.unread and tap.fed == [b""] and tap.finished is False and not tap.broken
    assert streams.wakeups == 5 + 5 + 1  # 5 batches read (past 4000 bytes), each written, the pipe


def test_a_client_gone_while_it_gets_an_unread_json_answer_ends_the_upstream_call(monkeypatch):
    monkeypatch.setattr(delivery, "BATCH_BYTES", 1000)
    monkeypatch.setattr(delivery, "WHOLE_JSON_BYTES", 4000)
    upstream, tap = Upstream([b"x" * 100] * 100, ending="hang"), RecordingTap()
    _, streams = _deliver(upstream.body(), headers=JSON, tap=tap, streams=FakeStreams(hangs_up_after=2))
    assert upstream.aborted and tap.broken and tap.unread and tap.finished is False


@pytest.mark.parametrize("path, shape", [("/v1/messages", "anthropic"), ("/openai/v1/chat/completions", "openai")])
def test_a_json_answer_that_breaks_off_is_a_502_in_the_clients_format_with_its_cors_fields(path, shape):
    headers = [*JSON, ("access-control-allow-origin", "https://app.test"), ("vary", "Origin"), ("request-id", "r1")]
    tap = RecordingTap()
    answer, _ = _deliver(Upstream([b'{"type":'], ending="break").body(), headers=headers, tap=tap, path=path)
    error = json.loads(answer.body)
    assert answer.status == 502 and tap.status == 502 and tap.fed == [answer.body]
    assert (error["type"] == "error") if shape == "anthropic" else ("type" not in error and "error" in error)
    assert ("access-control-allow-origin", "https://app.test") in answer.headers and (
        "vary",
        "Origin",
    ) in answer.headers
    assert ("request-id", "r1") not in answer.headers


def test_a_json_answer_declared_too_large_to_read_whole_is_piped_uncopied_and_unread():
    headers = [*JSON, ("content-length", str(delivery.WHOLE_JSON_BYTES + 1))]
    tap = RecordingTap()
    answer, streams = _deliver(Upstream([b"{}"]).body(), headers=headers, tap=tap)
    assert answer.body is streams.clients[0] and streams.whole_reads == 0
    assert tap.unread and tap.fed == [b""] and streams.wakeups == 1


def test_other_bodies_are_piped_uncopied_and_only_their_end_is_watched():
    tap, upstream = RecordingTap(), Upstream([b"\x00" * 1000] * 30)
    answer, streams = _deliver(upstream.body(), headers=[("content-type", "application/octet-stream")], tap=tap)
    assert streams.whole_reads == 0 and len(streams.clients[0].received) == 30
    assert tap.fed == [b""] and tap.finished is False and not tap.broken and not tap.unread
    assert streams.wakeups == 1


def test_another_body_that_breaks_off_says_the_connection_was_lost():
    tap = RecordingTap()
    _deliver(Upstream([b"part"], ending="break").body(), headers=[("content-type", "image/png")], tap=tap)
    assert tap.broken and tap.finished is False


def test_an_upstream_body_without_a_tap_goes_to_the_client_as_it_is():
    body = Upstream(_events(3)).body()
    answer, streams = _deliver(body)
    assert answer.body is body.stream and streams.clients == [] and streams.wakeups == 0


def test_relays_own_bytes_go_whole_and_the_tap_is_closed_at_once():
    tap = RecordingTap(401)
    answer, streams = _deliver(b'{"type":"error"}', headers=JSON, tap=tap, status=401)
    assert answer.body == b'{"type":"error"}' and answer.status == 401
    assert tap.fed == [b'{"type":"error"}'] and tap.finished is False and tap.written and streams.wakeups == 0


def test_an_upstream_answer_without_a_body_still_closes_its_tap():
    tap = RecordingTap(204)
    answer, _ = _deliver(None, headers=[], tap=tap, status=204)
    assert answer.body is None and tap.fed == [b""] and tap.finished is False and tap.written


async def _translated(parts, closed):
    try:
        for part in parts:
            yield part
    finally:
        closed.append(True)


def test_a_translated_stream_is_written_to_the_client_as_relay_makes_it():
    closed, tap = [], RecordingTap()
    answer, streams = _deliver(_translated([b"a", b"b", b"c"], closed), tap=tap)
    [client] = streams.clients
    assert answer.body is client and client.received == [b"a", b"b", b"c"] and client.ended
    assert tap.fed == [b"a", b"b", b"c"] and tap.finished is False and closed == [True]


def test_a_translated_streams_client_hanging_up_stops_the_pump_and_the_row_says_so():
    closed, tap = [], RecordingTap()
    _, streams = _deliver(_translated([b"a", b"b", b"c", b"d"], closed), tap=tap, streams=FakeStreams(hangs_up_after=2))
    assert streams.clients[0].received == [b"a", b"b"] and tap.finished is True and closed == [True]


def test_chunks_reads_a_stream_to_its_end():
    streams = FakeStreams()

    async def read_all(reader):
        return [chunk async for chunk in chunks(reader)]

    upstream = Upstream([b"one", b"two"])
    assert asyncio.run(read_all(FakeReader(FakeStream(upstream), streams))) == [b"one", b"two"]
    assert not upstream.cancelled


def test_chunks_closed_early_cancels_the_stream():
    upstream = Upstream([b"one", b"two", b"three"], ending="hang")

    async def first_only():
        reading = chunks(FakeReader(FakeStream(upstream), FakeStreams()))
        first = await reading.__anext__()
        await reading.aclose()
        return first

    assert asyncio.run(first_only()) == b"one" and upstream.cancelled


def test_chunks_of_a_stream_that_broke_off_raise_for_the_translator():
    async def read_all():
        return [c async for c in chunks(FakeReader(FakeStream(Upstream([b"x"], ending="break")), FakeStreams()))]

    with pytest.raises(BrokenOff):
        asyncio.run(read_all())
