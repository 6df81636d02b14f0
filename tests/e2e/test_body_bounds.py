"""Bodies relay reads into memory stay within their bound whatever the other side sends: a
request body without a content-length (relay's limit, RELAY_MAX_BODY_BYTES) and a JSON
answer without one (deliver.WHOLE_JSON_BYTES). Production isolates have 128 MB.

Each test has a Worker of its own, served by miniflare alone, like a deployed Worker (see
test_passthrough.py): an isolate's memory does not shrink once grown, so a Worker that had
held one large body would hide the next."""

from __future__ import annotations

import hashlib

import httpx

from bench import processes
from bench.miniflare_worker import MiniflareWorker
from devtools.fake_upstream import large_embeddings

from .conftest import ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, OPENAI_UPSTREAM_KEY
from .conftest import session_rows as rows

# How much the Worker's processes may grow while the bodies below pass: far less than them.
GROWTH_ALLOWED_BYTES = 48 * 1024 * 1024
UPLOAD_BYTES = 100 * 1024 * 1024
ANSWER_BYTES = 40 * 1024 * 1024


def _worker(anthropic_upstream, openai_upstream) -> MiniflareWorker:
    return MiniflareWorker(
        {
            "RELAY_CLIENT_KEYS": CLIENT_KEY,
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "OPENAI_API_KEYS": OPENAI_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
            "UPSTREAM_OPENAI_URL": openai_upstream.url,
        }
    )


def test_a_100_mb_chunked_request_body_is_refused_without_being_held(anthropic_upstream, openai_upstream, tag):
    """Read whole first, it had the Worker grow by 294 MB before the 413 (18 MB now): relay
    stops reading just past its limit (16 MB), and the client still gets relay's 413."""
    headers = {
        "x-api-key": CLIENT_KEY,
        "anthropic-version": "2023-06-01",
        "x-claude-code-session-id": tag,
        "x-test-tag": tag,
        "content-type": "application/json",
    }
    with (
        _worker(anthropic_upstream, openai_upstream) as worker,
        httpx.Client(base_url=worker.url, timeout=60) as client,
    ):
        assert client.get("/v1/models", headers=headers).status_code == 200
        serving = processes.session(worker.pid)
        before = peak = processes.rss_bytes(serving)
        sent = 0

        def upload():
            nonlocal sent, peak
            yield b'{"model": "claude-sonnet-4-5", "pad": "'
            while sent < UPLOAD_BYTES:
                yield b"x" * 65536
                sent += 65536
                if sent % (1024 * 1024) == 0:
                    peak = max(peak, processes.rss_bytes(serving))

        answer = client.post("/v1/messages", content=upload(), headers=headers)
        peak = max(peak, processes.rss_bytes(serving))
        assert answer.status_code == 413 and answer.headers["x-should-retry"] == "false"
        error = answer.json()
        assert error["type"] == "error" and error["error"]["type"] == "request_too_large"
        assert peak - before < GROWTH_ALLOWED_BYTES, f"the Worker grew by {(peak - before) >> 20} MiB"
        _, refused = rows(worker, tag, 2)
        assert (refused["status"], refused["error_type"]) == (413, "request_too_large")
    assert [seen.path for seen in anthropic_upstream.requests(tag)] == ["/v1/models"]


def test_a_large_chunked_json_answer_passes_whole_and_the_worker_does_not_hold_it(
    anthropic_upstream, openai_upstream, tag
):
    """A 40 MB embeddings answer without a content-length was read whole before a byte of
    it went on (the Worker grew by 235 MB; 28 MB now): relay reads up to its bound (16 MB),
    then passes what it read and the rest on unread, and its row says so."""
    headers = {
        "authorization": f"Bearer {CLIENT_KEY}",
        "x-claude-code-session-id": tag,
        "x-fake-json-bytes": str(ANSWER_BYTES),
        "accept-encoding": "identity",
    }  # the bytes relay passes on, not the runtime's gzip of them
    body = {"model": "text-embedding-3-small", "input": "hi"}
    expected = large_embeddings(ANSWER_BYTES)
    with (
        _worker(anthropic_upstream, openai_upstream) as worker,
        httpx.Client(base_url=worker.url + "/openai/v1", timeout=60) as client,
    ):
        small = client.post("/embeddings", json=body, headers={**headers, "x-fake-json-bytes": "4096"})
        assert small.content == large_embeddings(4096)
        serving = processes.session(worker.pid)
        before = peak = processes.rss_bytes(serving)
        digest, received = hashlib.sha256(), 0
        with client.stream("POST", "/embeddings", json=body, headers=headers) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
            for chunk in answer.iter_raw():
                digest.update(chunk)
                received += len(chunk)
                peak = max(peak, processes.rss_bytes(serving))
        assert received == len(expected) and digest.digest() == hashlib.sha256(expected).digest()
        assert peak - before < GROWTH_ALLOWED_BYTES, f"the Worker grew by {(peak - before) >> 20} MiB"
        read, passed_on = rows(worker, tag, 2)
        assert (read["status"], read["usage_basis"], read["input_tokens"]) == (200, None, 8)
        assert (passed_on["status"], passed_on["error_type"], passed_on["usage_basis"]) == (200, None, "unread")
        assert passed_on["input_tokens"] is None and passed_on["cost_usd"] is None
