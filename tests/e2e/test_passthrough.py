"""Upstream bodies relay passes on without reading them (a file download through the Files
API, say): whole and at the pace the client reads them, never held whole by the Worker, and
each with a row that says how it ended. Relay does not copy such a body, so when one breaks
off it cannot tell whether the client or the upstream went away: the row says
`connection_lost`, and the upstream request is ended either way."""

from __future__ import annotations

import hashlib

import httpx

from bench import processes
from bench.miniflare_worker import MiniflareWorker
from devtools.fake_upstream import file_bytes

from .conftest import ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY
from .conftest import session_rows as rows

FILE = "/v1/files/file_relay_test/content"
LARGE_FILE_BYTES = 96 * 1024 * 1024
# How much the Worker's processes may grow while the large file passes: far less than it.
GROWTH_ALLOWED_BYTES = 32 * 1024 * 1024


def _headers(tag: str, size: int, **extra: str) -> dict[str, str]:
    return {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "x-claude-code-session-id": tag,
        "x-test-tag": tag,
        "x-fake-bytes": str(size),
        **extra,
    }


def test_a_large_file_passes_whole_and_the_worker_does_not_hold_it(anthropic_upstream, tag):
    """Served by miniflare alone, like a deployed Worker: `wrangler dev`'s inspector keeps
    copies of the bodies that pass (measured: 1.4 GB for a 256 MB file), which would hide
    the Worker's own use."""
    vars = {
        "RELAY_CLIENT_KEYS": CLIENT_KEY,
        "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
        "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
    }
    with MiniflareWorker(vars) as worker, httpx.Client(base_url=worker.url, timeout=60) as client:
        assert client.get(FILE, headers=_headers(tag, 1024)).content == file_bytes(0, 1024)
        serving = processes.session(worker.pid)
        before = peak = processes.rss_bytes(serving)
        digest, received = hashlib.sha256(), 0
        with client.stream("GET", FILE, headers=_headers(tag, LARGE_FILE_BYTES)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            for chunk in response.iter_raw():
                digest.update(chunk)
                received += len(chunk)
                peak = max(peak, processes.rss_bytes(serving))
        assert received == LARGE_FILE_BYTES
        assert digest.digest() == hashlib.sha256(file_bytes(0, LARGE_FILE_BYTES)).digest()
        assert peak - before < GROWTH_ALLOWED_BYTES, f"the Worker grew by {(peak - before) >> 20} MiB"
        for row in rows(worker, tag, 2):
            assert (row["path"], row["status"], row["error_type"]) == (FILE, 200, None)


def test_a_passed_through_answer_keeps_the_providers_fields_but_not_relays_own(relay, anthropic_upstream, tag):
    """Header fields cross an endpoint relay does not read as they cross the ones it reads."""
    answer = httpx.get(
        relay.url + FILE,
        headers=_headers(tag, 1024, cookie="session=client-cookie", **{"x-forwarded-for": "198.51.100.7"}),
    )
    assert answer.content == file_bytes(0, 1024)
    assert answer.headers["request-id"].startswith("req_fake_")
    assert not {"set-cookie", "anthropic-organization-id"} & set(answer.headers.keys())
    [seen] = anthropic_upstream.requests(tag)
    assert (seen.header("cookie"), seen.header("x-forwarded-for")) == (None, None)
    assert seen.header("x-claude-code-session-id") == tag


def test_a_file_the_upstream_breaks_off_leaves_a_row_saying_so(relay, tag):
    size = 4 * 1024 * 1024
    with httpx.stream(
        "GET", relay.url + FILE, headers=_headers(tag, size, **{"x-fake-scenario": "close-midstream"}), timeout=30
    ) as response:
        received = b""
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.HTTPError:  # the broken-off chunked body may surface as a protocol error
            pass
    assert len(received) < size and received == file_bytes(0, len(received))
    [row] = rows(relay, tag, 1)
    assert (row["status"], row["error_type"]) == (200, "connection_lost")


def test_a_client_that_hangs_up_mid_file_ends_the_upstream_request(relay, anthropic_upstream, tag):
    with httpx.stream("GET", relay.url + FILE, headers=_headers(tag, 1024 * 1024 * 1024), timeout=30) as response:
        next(response.iter_raw())  # and hang up
    [row] = rows(relay, tag, 1)
    [seen] = anthropic_upstream.requests(tag)
    assert (row["status"], row["error_type"]) == (200, "connection_lost")
    assert seen.cut_off  # relay closed the upstream connection: the rest of the file is not sent
