"""Upstream key pools: stickiness, turns, cool-downs from provider headers, failover."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime

from relay import keys
from relay.app import handle
from relay.http import Headers, Request, Response
from relay.keys import Cooldowns, cooldown_until, pool, preference
from relay.services import IsolateState, Services
from tests.fakes.platform import MemoryKV

KEYS = ("sk-one", "sk-two", "sk-three")
NOW = 1_800_000_000.0


class ScriptedTransport:
    """Answers by upstream key: a status per key (default 200), recording each call."""

    def __init__(self, statuses=None, headers=()):
        self.statuses = statuses or {}
        self.headers = list(headers)
        self.calls: list[str] = []
        self.discarded: list[object] = []

    async def send(self, method, url, headers, body, timeout=None):
        key = dict(headers)["x-api-key"]
        self.calls.append(key)
        status = self.statuses.get(key, 200)
        return Response(status, [("content-type", "application/json"), *self.headers], f"body-{key}")

    async def discard(self, body):
        self.discarded.append(body)


def _request(session=None):
    headers = [("x-api-key", "client"), ("content-type", "application/json")]
    if session:
        headers.append(("x-claude-code-session-id", session))
    body = json.dumps({"model": "claude-x", "messages": []}).encode()

    async def read():
        return body
    return Request("POST", "/v1/messages", "", Headers(headers), read)


ENV = {"RELAY_CLIENT_KEYS": "client", "ANTHROPIC_API_KEYS": ",".join(KEYS)}


def _send(services, session=None, env=ENV):
    return asyncio.run(handle(_request(session), env, services))


def test_key_ids_are_short_and_hold_no_key_material():
    ids = [key.id for key in pool("anthropic", ("sk-ant-api03-secret-value",))]
    assert ids[0].startswith("anthropic-") and len(ids[0]) == len("anthropic-") + 8
    assert "secret" not in ids[0] and "sk-ant" not in ids[0]


def test_upstream_keys_are_hashed_once_per_isolate_not_per_request(monkeypatch):
    secrets, hashed = [key.encode() for key in KEYS], []
    sha256 = keys.hashlib.sha256

    def counting(data):
        if data in secrets:
            hashed.append(data)
        return sha256(data)
    monkeypatch.setattr(keys.hashlib, "sha256", counting)
    services = Services(transport=ScriptedTransport())
    _send(services)
    assert hashed == secrets  # the pool's ids, made while the settings were parsed
    hashed.clear()
    for _ in range(3):
        _send(services)
    assert hashed == [] and len(services.transport.calls) == 4


def test_a_session_always_prefers_the_same_key():
    keys = pool("anthropic", KEYS)
    firsts = {preference(keys, "session-a", turn)[0].id for turn in range(10)}
    assert len(firsts) == 1


def test_sessions_spread_over_the_keys():
    keys = pool("anthropic", KEYS)
    spread = Counter(preference(keys, f"session-{n}", 0)[0].id for n in range(300))
    assert set(spread) == {key.id for key in keys}
    assert min(spread.values()) > 60


def test_requests_without_a_session_take_turns():
    services = Services(transport=ScriptedTransport())
    for _ in range(6):
        _send(services)
    assert Counter(services.transport.calls) == {"sk-one": 2, "sk-two": 2, "sk-three": 2}


def test_cooldown_follows_retry_after_then_ratelimit_reset_then_default():
    assert cooldown_until(429, Headers([("retry-after", "12")]), NOW) == NOW + 12
    reset = Headers([("anthropic-ratelimit-tokens-remaining", "0"),
                     ("anthropic-ratelimit-tokens-reset", "2027-01-15T08:00:30Z"),
                     ("anthropic-ratelimit-requests-remaining", "5"),
                     ("anthropic-ratelimit-requests-reset", "2027-01-15T09:00:00Z")])
    exhausted = datetime.fromisoformat("2027-01-15T08:00:30+00:00").timestamp()
    assert cooldown_until(429, reset, exhausted - 100) == exhausted  # the exhausted limit's reset
    assert cooldown_until(429, reset, exhausted + 100) == exhausted + 101  # a past reset: a second
    assert cooldown_until(429, Headers([]), NOW) == NOW + 30


def test_a_429_fails_over_to_the_next_key_and_cools_the_first():
    transport = ScriptedTransport({"sk-one": 429}, headers=[("retry-after", "20")])
    services = Services(transport=transport)
    answers = [_send(services) for _ in range(6)]

    assert [answer.status for answer in answers] == [200] * 6
    assert "body-sk-one" not in [answer.body for answer in answers]
    assert transport.discarded == ["body-sk-one"]  # its 429 was dropped, not passed on
    assert transport.calls.count("sk-one") == 1  # then skipped while cooling


def test_a_session_moves_only_while_its_key_cools():
    services = Services(transport=ScriptedTransport())
    _send(services, "s-1")
    home = services.transport.calls[-1]
    services.transport.statuses = {home: 429}
    _send(services, "s-1")
    moved = services.transport.calls[-1]
    assert moved != home
    services.transport.statuses = {}
    _send(services, "s-1")
    assert services.transport.calls[-1] == moved  # the cool-down has not ended yet
    services.state.cooldowns["anthropic"].clear()
    _send(services, "s-1")
    assert services.transport.calls[-1] == home


def test_a_429_with_retry_after_zero_is_retried_without_cooling():
    transport = ScriptedTransport({"sk-one": 429}, headers=[("retry-after", "0")])
    services = Services(transport=transport, kv=MemoryKV())
    assert [_send(services).status for _ in range(6)] == [200] * 6
    assert transport.calls.count("sk-one") == 2
    assert services.kv.values == {}


def test_5xx_fails_over_without_cooling():
    services = Services(transport=ScriptedTransport({"sk-one": 529, "sk-two": 503}))
    assert _send(services).status == 200
    assert services.state.cooldowns.get("anthropic", {}) == {}


def test_every_key_429_gives_a_429_with_the_shortest_wait():
    transport = ScriptedTransport({key: 429 for key in KEYS}, headers=[("retry-after", "40")])
    services = Services(transport=transport)
    answer = _send(services)
    assert answer.status == 429
    assert dict(answer.headers)["retry-after"] == "40"

    again = _send(services)
    assert again.status == 429 and len(transport.calls) == 3  # nobody asked upstream
    assert 1 <= int(dict(again.headers)["retry-after"]) <= 40
    assert json.loads(again.body)["error"]["type"] == "rate_limit_error"


def test_cooldowns_are_shared_through_kv():
    kv = MemoryKV()
    first = Services(transport=ScriptedTransport({"sk-one": 429}, headers=[("retry-after", "300")]), kv=kv)
    for _ in range(3):
        _send(first)
    assert first.transport.calls.count("sk-one") == 1
    other_isolate = Services(transport=ScriptedTransport(), kv=kv, state=IsolateState())
    for _ in range(3):
        _send(other_isolate)
    assert "sk-one" not in other_isolate.transport.calls


def test_expired_cooldowns_recover_by_themselves():
    services = Services(transport=ScriptedTransport(), kv=MemoryKV())
    cooldowns = Cooldowns("anthropic", services)
    asyncio.run(cooldowns.cool("anthropic-x", NOW + 5, NOW))
    assert asyncio.run(cooldowns.current(NOW + 1)) == {"anthropic-x": NOW + 5}
    services.state.cooldowns_read_at.clear()
    assert asyncio.run(cooldowns.current(NOW + 6)) == {}
