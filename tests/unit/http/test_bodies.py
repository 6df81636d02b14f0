"""Request bodies read within relay's bound (relay.http.bodies), over the fake of the runtime's
stream operations (tests/fakes/streams.py), which counts Python's wake-ups."""

from __future__ import annotations

import asyncio

import pytest

from relay.http import bodies
from relay.http.bodies import declared_length, read_within, request_body
from relay.http.messages import Headers
from tests.fakes.streams import FakeStream, FakeStreams, Upstream

LIMIT = 10_000


def _read(upstream, declared=None, limit=LIMIT):
    streams = FakeStreams()
    stream = FakeStream(upstream)
    body = asyncio.run(asyncio.wait_for(request_body(stream, declared, limit, streams), 5))
    return body, streams, stream


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(bodies, "BATCH_BYTES", 1000)


def test_a_body_of_a_declared_length_within_the_limit_is_read_whole_in_one_native_call():
    body, streams, _ = _read(Upstream([b"a" * 4000, b"b" * 4000]), declared=8000)
    assert body == b"a" * 4000 + b"b" * 4000 and streams.whole_reads == 1 and streams.wakeups == 1


def test_a_body_declared_too_large_is_not_read_at_all():
    body, streams, stream = _read(Upstream([b"a" * 100]), declared=LIMIT + 1)
    assert body is None and not stream.taken and streams.wakeups == 0


def test_a_body_of_unknown_length_is_read_a_batch_at_a_time():
    """Python wakes once a batch (1000 bytes here), not once a chunk of 100."""
    parts = [bytes([65 + n % 26]) * 100 for n in range(85)]
    body, streams, _ = _read(Upstream(parts))
    assert body == b"".join(parts) and streams.whole_reads == 0 and streams.wakeups == 9


def test_a_body_of_unknown_length_over_the_limit_is_cancelled_once_past_it():
    """A 100 MB chunked upload was read whole before the 413: now no more than the limit and
    one batch is read, and the client's stream is cancelled."""
    upstream = Upstream([b"x" * 100] * 1_000_000, ending="hang")
    body, streams, stream = _read(upstream)
    assert body is None and upstream.cancelled
    assert stream.position * 100 <= LIMIT + 1000 and streams.wakeups == LIMIT // 1000 + 1


def test_a_body_of_exactly_the_limit_is_read():
    body, _, _ = _read(Upstream([b"x" * 500] * (LIMIT // 500)))
    assert body is not None and len(body) == LIMIT


def test_no_body_is_an_empty_one():
    assert asyncio.run(request_body(None, None, LIMIT, FakeStreams())) == b""


@pytest.mark.parametrize(
    "value, length",
    [("120", 120), (" 7 ", 7), ("", None), ("-1", None), ("1e3", None), ("²", None), ("٣", None), (None, None)],
)
def test_declared_length(value, length):
    headers = Headers([] if value is None else [("content-length", value)])
    assert declared_length(headers) == length


def test_read_within_stops_just_past_the_limit_and_keeps_the_stream():
    stream = FakeStream(Upstream([b"x" * 300] * 10))
    reader = FakeStreams().reader(stream, 300)
    parts, ended = asyncio.run(read_within(reader, 1000))
    assert (len(parts), ended, stream.position, stream.taken) == (4, False, 4, True)
