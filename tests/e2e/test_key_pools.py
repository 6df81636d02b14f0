"""Several upstream keys behind one relay: failover on 429, cool-downs, session stickiness.

Runs its own Worker with a pool of three upstream keys in front of its own fake upstream,
which the tests rate-limit key by key. Assertions name keys by pool position, never by value.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import anthropic
import pytest

from devtools.fake_upstream import REPLY_TEXT, FakeUpstream
from devtools.local_worker import LocalWorker

from .conftest import CLIENT_KEY, ISSUED

POOL = ("sk-ant-pool-key-aaaa", "sk-ant-pool-key-bbbb", "sk-ant-pool-key-cccc")
NAMES = dict(zip(POOL, "abc"))
ISSUED.extend(POOL)
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream("anthropic") as fake:
        yield fake


@pytest.fixture(scope="module")
def pooled_relay(upstream):
    with LocalWorker(
        {"RELAY_CLIENT_KEYS": CLIENT_KEY, "ANTHROPIC_API_KEYS": ",".join(POOL), "UPSTREAM_ANTHROPIC_URL": upstream.url}
    ) as worker:
        yield worker
        log = worker.log()
    assert not [name for key, name in NAMES.items() if key in log], "an upstream key is in the Worker's log"


@pytest.fixture
def client(pooled_relay, tag):
    return anthropic.Anthropic(
        base_url=pooled_relay.url, api_key=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
    )


def _ask(client, session=None):
    headers = {"x-claude-code-session-id": session} if session else {}
    return client.messages.create(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], extra_headers=headers
    )


def _keys_used(upstream, tag) -> list[str]:
    return [NAMES[seen.header("x-api-key")] for seen in upstream.requests(tag)]


def test_a_rate_limited_key_is_skipped_until_its_cooldown_ends(client, upstream, tag):
    upstream.rate_limit(POOL[0], retry_after=3)
    try:
        answers = [_ask(client) for _ in range(9)]
    finally:
        upstream.lift(POOL[0])
    assert all(answer.content[0].text == REPLY_TEXT for answer in answers)
    used = _keys_used(upstream, tag)
    assert used.count("a") == 1, used  # answered 429 once, then skipped while cooling
    assert Counter(used)["b"] + Counter(used)["c"] == 9

    time.sleep(3.5)
    for _ in range(6):
        _ask(client)
    assert "a" in _keys_used(upstream, tag)[10:]  # recovered by itself


def test_a_session_stays_on_one_key(client, upstream, tag):
    sessions = [str(uuid.uuid4()) for _ in range(12)]
    for _ in range(3):
        for session in sessions:
            _ask(client, session)

    by_session: dict[str, set[str]] = {}
    for seen in upstream.requests(tag):
        by_session.setdefault(seen.header("x-claude-code-session-id"), set()).add(NAMES[seen.header("x-api-key")])
    assert all(len(keys) == 1 for keys in by_session.values()), by_session
    assert len(set.union(*by_session.values())) >= 2  # sessions are spread over the pool


def test_every_key_rate_limited_gives_429_with_the_shortest_retry_after(client, upstream, tag):
    for key, wait in zip(POOL, (2, 4, 6)):
        upstream.rate_limit(key, retry_after=wait)
    try:
        with pytest.raises(anthropic.RateLimitError) as first:
            _ask(client)
        assert sorted(_keys_used(upstream, tag)) == ["a", "b", "c"]
        assert first.value.response.headers["retry-after"] == "2"

        with pytest.raises(anthropic.RateLimitError) as second:
            _ask(client)
        assert len(upstream.requests(tag)) == 3  # all cooling: the upstream is not asked
        assert 1 <= int(second.value.response.headers["retry-after"]) <= 2
        assert "rate limited" in second.value.body["error"]["message"]
    finally:
        for key in POOL:
            upstream.lift(key)
    time.sleep(6.5)
    assert _ask(client).content[0].text == REPLY_TEXT


def test_odd_retry_afters_fail_over_to_the_next_key_instead_of_a_500(upstream, tag):
    """ "²" passed str.isdigit() and float() refused it; 99999999999 s made the KV write fail
    and would have cooled the key for 3,000 years: each was a 500. A Worker of its own,
    since its keys stay cooling (an hour at most) after the test."""
    with LocalWorker(
        {"RELAY_CLIENT_KEYS": CLIENT_KEY, "ANTHROPIC_API_KEYS": ",".join(POOL), "UPSTREAM_ANTHROPIC_URL": upstream.url}
    ) as worker:
        client = anthropic.Anthropic(
            base_url=worker.url, api_key=CLIENT_KEY, max_retries=0, default_headers={"x-test-tag": tag}
        )
        upstream.rate_limit(POOL[0], retry_after="²")
        upstream.rate_limit(POOL[1], retry_after="99999999999")
        try:
            answers = [_ask(client) for _ in range(4)]
        finally:
            upstream.lift(POOL[0])
            upstream.lift(POOL[1])
        log = worker.log()
    assert all(answer.content[0].text == REPLY_TEXT for answer in answers)
    used = _keys_used(upstream, tag)
    assert used.count("a") == used.count("b") == 1, used  # answered 429 once each, then cooling
    assert "Traceback" not in log and "not shared" not in log and "not read" not in log


def test_a_429_for_one_model_leaves_other_models_count_tokens_and_the_catalogue_flowing(client, upstream, tag):
    """One 429 on one model cooled its key for every model and endpoint: count_tokens,
    /v1/models and another model's calls got relay's own 429 without reaching the provider.
    Now only the model class whose output tokens ran out cools, on that key alone."""
    upstream.rate_limit(POOL[0], retry_after=30, model="claude-opus-4-1", kind="output-tokens")
    try:
        opus = [client.messages.create(model="claude-opus-4-1", max_tokens=8, messages=HELLO) for _ in range(3)]
        assert all(answer.content[0].text == REPLY_TEXT for answer in opus)
        assert _keys_used(upstream, tag).count("a") == 1  # its 429 once, then cooling for Opus

        for _ in range(6):
            assert _ask(client).content[0].text == REPLY_TEXT  # Sonnet: key a still takes its turns
            counted = client.messages.count_tokens(model="claude-opus-4-1", messages=HELLO)
            assert counted.input_tokens > 0
            assert client.models.list().data
            assert _ask(client).content[0].text == REPLY_TEXT  # four calls a round: each meets key a
    finally:
        upstream.lift(POOL[0])
    later = upstream.requests(tag)[3:]
    on_a = [seen for seen in later if NAMES[seen.header("x-api-key")] == "a"]
    assert {seen.path.split("?")[0] for seen in on_a} == {"/v1/messages", "/v1/messages/count_tokens", "/v1/models"}
    assert all("claude-opus" not in seen.body.decode() for seen in on_a if seen.path == "/v1/messages")
