"""The wiretap in front of every e2e Worker: it forwards without holding anything back, passes
disconnects on, and the suite's scan finds a secret in whatever answer holds one, except the
one field that shows a new relay key."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import uuid
import zlib

import httpx
import pytest

from devtools.fake_upstream import FakeUpstream
from devtools.wiretap import Recording, Wiretap, answers, issued_key, scanned

SECRET = "sk-ant-unit-test-secret-0001"
NEW_KEY = "rk-unit-test-new-relay-key-0001"
ISSUE = b"POST /admin/keys HTTP/1.1\r\nhost: relay\r\ncontent-length: 2\r\n\r\n{}"


def _json_answer(status: int, payload, *fields: bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return (
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n" % status
        + b"".join(f + b"\r\n" for f in fields)
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def _read(recording: Recording) -> list[bytes]:
    found, rest = answers(recording)
    assert rest == b""
    return [scanned(answer) for answer in found]


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream("anthropic") as fake:
        yield fake


def test_a_streamed_answer_passes_the_tap_before_it_ends(upstream):
    """The fake sends message_start, then waits for the test: through a tap that held the
    stream back, the client would not see message_start until the gate timed out."""
    gate = uuid.uuid4().hex
    body = {"model": SECRET, "max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with Wiretap(upstream.port) as tap, httpx.Client(base_url=tap.url, timeout=5) as client:
        with client.stream("POST", "/v1/messages", json=body, headers={"x-fake-gate": gate}) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: message_start"
            assert SECRET in next(lines)
            upstream.release(gate)
            rest = list(lines)
        assert 'data: {"type": "message_stop"}' in rest
        assert client.get("/v1/models").status_code == 200  # the same connection, kept alive
    [recording] = tap.recordings
    [stream, models] = _read(recording)
    assert SECRET in stream.decode() and b"message_stop" in stream and b"transfer-encoding: chunked" in stream
    assert b'"data"' in models


def _chunked(body: bytes, *fields: bytes) -> bytes:
    """An answer whose body comes in two chunks, split in the middle."""
    half = len(body) // 2
    return (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + b"\r\n"
        + b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])
    )


@pytest.mark.parametrize("coding", [None, "gzip", "deflate"])
def test_a_secret_split_across_chunks_is_found_in_the_body(coding):
    """workerd compresses relay's JSON answers for clients that accept it."""
    body = b'{"error": "%s"}' % SECRET.encode()
    if coding:
        body = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    fields = (b"content-encoding: " + coding.encode(),) if coding else ()
    recording = Recording(bytearray(b"GET /v1/x HTTP/1.1\r\nhost: relay\r\n\r\n"), bytearray(_chunked(body, *fields)))
    assert SECRET.encode() not in recording.received
    [answer] = _read(recording)
    assert SECRET.encode() in answer


def test_a_body_in_a_coding_the_scan_cannot_undo_is_said_so():
    recording = Recording(
        bytearray(b"GET /v1/x HTTP/1.1\r\nhost: relay\r\n\r\n"),
        bytearray(_chunked(b"\x0b\x01\x80secret\x03", b"content-encoding: gzip, br")),
    )
    [answer], _ = answers(recording)
    assert answer.unread_coding == "gzip, br"


def test_only_the_key_field_of_the_answer_that_issues_a_key_is_exempt():
    record = {"id": "rk_0000abcd", "name": "alice"}
    body = json.dumps({"key": NEW_KEY, **record}).encode()
    for answer in (_json_answer(201, body), _chunked(gzip.compress(body), b"content-encoding: gzip")):
        [found], _ = answers(Recording(bytearray(ISSUE), bytearray(answer.replace(b"200 OK", b"201 Created"))))
        assert issued_key(found) == NEW_KEY
        assert NEW_KEY.encode() not in scanned(found) and b"alice" in scanned(found)

    for request, answer in (
        (ISSUE, _json_answer(201, {"key": NEW_KEY, **record, "name": NEW_KEY})),  # also elsewhere
        (ISSUE, _json_answer(201, {"key": NEW_KEY, "nested": {"note": f"was {NEW_KEY}"}})),
        (ISSUE, _json_answer(201, {"key": NEW_KEY}, b"x-echo: " + NEW_KEY.encode())),  # in a field
        (ISSUE, _json_answer(201, {"key": NEW_KEY, **record}) + b"then " + NEW_KEY.encode()),  # after it
        (ISSUE, _json_answer(200, {"key": NEW_KEY})),  # not 201
        (ISSUE.replace(b"/admin/keys", b"/admin/keys/rk_1"), _json_answer(201, {"key": NEW_KEY})),
        (ISSUE.replace(b"POST", b"PUT"), _json_answer(201, {"key": NEW_KEY})),
        (ISSUE, _json_answer(201, b'{"key": "%s", "key": "rk-other"}' % NEW_KEY.encode())),  # twice
    ):
        found, rest = answers(Recording(bytearray(request), bytearray(answer)))
        assert NEW_KEY.encode() in b"".join(map(scanned, found)) + rest, answer


def test_answers_on_a_kept_alive_connection_are_paired_with_their_requests():
    sent = b"GET /admin/keys HTTP/1.1\r\nhost: relay\r\n\r\n" + ISSUE + b"HEAD /x HTTP/1.1\r\nhost: relay\r\n\r\n"
    received = (
        _json_answer(200, {"data": [NEW_KEY]})
        + _json_answer(201, {"key": NEW_KEY})
        + b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"
    )
    listing, issuing, head = answers(Recording(bytearray(sent), bytearray(received)))[0]
    assert (listing.method, listing.status, issued_key(listing)) == ("GET", 200, None)
    assert NEW_KEY.encode() in scanned(listing)
    assert issued_key(issuing) == NEW_KEY
    assert (head.method, head.body) == ("HEAD", b"")


def test_an_answer_to_a_request_the_tap_cannot_read_is_scanned_and_never_exempt():
    recording = Recording(
        bytearray(b"POST /admin/keys HTTP/1.1\r\nbad field: x\r\n\r\n"), bytearray(_json_answer(201, {"key": NEW_KEY}))
    )
    [answer] = _read(recording)
    assert NEW_KEY.encode() in answer


@pytest.fixture
def plain_server():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        yield server


def test_a_side_that_closes_is_closed_for_the_other(plain_server):
    with Wiretap(plain_server.getsockname()[1]) as tap:
        for closing in ("client", "server"):
            client = socket.create_connection(("127.0.0.1", tap.port), timeout=5)
            server, _ = plain_server.accept()
            server.settimeout(5)
            client.sendall(b"ping")
            assert server.recv(4) == b"ping"
            server.sendall(b"pong")
            assert client.recv(4) == b"pong"
            quitter, other = (client, server) if closing == "client" else (server, client)
            quitter.close()
            assert other.recv(4) == b""  # end of stream, not a timeout
            other.close()
    assert [(bytes(r.sent), bytes(r.received)) for r in tap.recordings] == [(b"ping", b"pong")] * 2


def test_stopping_the_tap_ends_the_connections_still_open(plain_server):
    tap = Wiretap(plain_server.getsockname()[1]).start()
    with socket.create_connection(("127.0.0.1", tap.port), timeout=5) as client:
        server, _ = plain_server.accept()
        with server:
            server.settimeout(5)
            tap.stop()
            for side in (client, server):
                with contextlib.suppress(ConnectionResetError):
                    assert side.recv(4) == b""


def test_a_refused_connection_is_reset():
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with Wiretap(port) as tap, pytest.raises(httpx.HTTPError):
        httpx.get(tap.url, timeout=5)


def test_an_answer_sent_before_a_reset_reaches_the_client(plain_server):
    """A server that refuses the rest of a request (workerd's 431 for a huge head) answers
    and closes with the rest unread, which resets the connection while the client is still
    sending: the client still reads the answer, through the tap as without it."""
    with Wiretap(plain_server.getsockname()[1]) as tap:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", tap.port), timeout=5) as client:
                sending = threading.Thread(target=_send_until_refused, args=(client,))
                sending.start()
                server, _ = plain_server.accept()
                with server:
                    server.recv(1024)
                    server.sendall(b"HTTP/1.1 431 Too Large\r\nconnection: close\r\n\r\n")
                sending.join()
                assert client.recv(4096).startswith(b"HTTP/1.1 431")


def _send_until_refused(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(b"x" * (16 << 20))
