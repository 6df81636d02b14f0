"""Relay keys made with the admin API, used by real clients through the Worker on workerd."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import httpx
import pytest

from devtools.fake_upstream import REPLY_TEXT
from tests.clients import wait_for_a_fresh_minute

from .conftest import ADMIN_TOKEN, create_key

CACHE_SECONDS = 2  # RELAY_KEY_CACHE_SECONDS in conftest


def _client(relay, key, tag):
    return anthropic.Anthropic(base_url=relay.url, api_key=key, max_retries=0, default_headers={"x-test-tag": tag})


def _ask(client, model="claude-sonnet-4-5"):
    return client.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_a_new_key_works_at_once_and_stops_working_after_revocation(relay, anthropic_upstream, tag):
    created = create_key(relay)
    client = _client(relay, created["key"], tag)
    assert _ask(client).content[0].text == REPLY_TEXT

    revoked = httpx.post(
        f"{relay.url}/admin/keys/{created['id']}/revoke", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert revoked.status_code == 200
    time.sleep(CACHE_SECONDS + 0.5)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        _ask(client)
    assert "revoked" in caught.value.body["error"]["message"]
    assert len(anthropic_upstream.requests(tag)) == 1


def test_models_outside_the_allow_list_get_403(relay, anthropic_upstream, tag):
    client = _client(relay, create_key(relay, allowed_models=["claude-haiku-*"])["key"], tag)

    assert _ask(client, "claude-haiku-4-5").content[0].text == REPLY_TEXT
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        _ask(client, "claude-opus-4-1")
    assert "claude-opus-4-1" in caught.value.body["error"]["message"]
    assert [s.json()["model"] for s in anthropic_upstream.requests(tag)] == ["claude-haiku-4-5"]


def test_an_expired_key_is_refused(relay, anthropic_upstream, tag):
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3))
    expiring = create_key(relay, expires_at=soon)
    time.sleep(4)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        _ask(_client(relay, expiring["key"], tag))
    assert "expired" in caught.value.body["error"]["message"]
    assert anthropic_upstream.requests(tag) == []


def _burst(relay, key, tag, count=300) -> list[httpx.Response]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "x-test-tag": tag}
    with httpx.Client(base_url=relay.url, headers=headers, timeout=60) as http, ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda _: http.post("/v1/messages", json=body), range(count)))


@pytest.mark.parametrize("rpm, accepted", [(400, 300), (100, 100)])
def test_a_burst_of_300_requests_against_the_per_key_limit(relay, anthropic_upstream, tag, rpm, accepted):
    key = create_key(relay, rpm_limit=rpm)["key"]
    wait_for_a_fresh_minute()
    answers = _burst(relay, key, tag)

    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == accepted
    assert statuses.count(429) == 300 - accepted
    assert len(anthropic_upstream.requests(tag)) == accepted  # no limited request reached the upstream
    for limited in (a for a in answers if a.status_code == 429):
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert key not in limited.text
