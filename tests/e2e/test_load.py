"""Load: a Claude Code-like key bursting 300 streaming requests in each of two minutes.

Every request must succeed (its key's limit is 400 a minute), every stream must end with
message_stop, and the audit log must hold exactly one row per request.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.clients import wait_for_a_fresh_minute

from .conftest import create_key
from .conftest import session_rows as rows

PER_MINUTE = 300
MINUTES = 2
CONCURRENCY = 16


def _stream(http: httpx.Client) -> tuple[int, bytes]:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with http.stream("POST", "/v1/messages", json=body) as response:
        return response.status_code, response.read()


def test_bursts_of_300_streams_a_minute_for_two_minutes(relay, anthropic_upstream, tag):
    key = create_key(relay, rpm_limit=400)["key"]
    headers = {
        "x-api-key": key,
        "anthropic-version": "2023-06-01",
        "x-test-tag": tag,
        "x-claude-code-session-id": tag,
        "x-fake-events": "3",
    }
    results = []
    with httpx.Client(base_url=relay.url, headers=headers, timeout=60) as http, ThreadPoolExecutor(CONCURRENCY) as pool:
        for minute in range(MINUTES):
            if minute:
                time.sleep(60 - time.time() % 60 + 0.2)  # the next minute's window
            else:
                wait_for_a_fresh_minute(25.0)
            results += pool.map(lambda _: _stream(http), range(PER_MINUTE))

    total = PER_MINUTE * MINUTES
    failures = [
        (status, body[:200])
        for status, body in results
        if status != 200 or not body.rstrip().endswith(b'data: {"type": "message_stop"}')
    ]
    assert failures == []
    assert len(anthropic_upstream.requests(tag)) == total
    found = rows(relay, tag, total)
    assert all(row["status"] == 200 and row["error_type"] is None and row["output_tokens"] == 12 for row in found)
