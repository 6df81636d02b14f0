"""Upstream key pools: stickiness, turns, cool-downs from provider headers, failover."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import datetime

import pytest

from relay.http.messages import Headers, Request, Response
from relay.pipeline.app import handle
from relay.providers import key_pool as keys
from relay.providers.key_pool import (
    KV_REFRESH_SECONDS,
    KV_WRITE_INTERVAL_SECONDS,
    MAX_COOLDOWN_SECONDS,
    Cooldowns,
    cooldown_until,
    pool,
    preference,
)
from relay.services import IsolateState, Services
from tests.fakes.platform import MemoryKV
from tests.fakes.streams import read_body

KEYS = ("sk-one", "sk-two", "sk-three")
NOW = 1_800_000_000.0


class ScriptedTransport:
    """Answers by upstream key: a status per key (default 200), with `headers` (or that
    key's own, from `headers_by_key`), recording each call. Each call lets other tasks run
    first, as network I/O does."""

    def __init__(self, statuses=None, headers=(), headers_by_key=None):
        self.statuses = statuses or {}
        self.headers = list(headers)
        self.headers_by_key = headers_by_key or {}
        self.calls: list[str] = []
        self.discarded: list[object] = []

    async def send(self, method, url, headers, body, timeout=None):
        await asyncio.sleep(0)
        key = dict(headers)["x-api-key"]
        self.calls.append(key)
        status = self.statuses.get(key, 200)
        fields = self.headers_by_key.get(key, self.headers)
        return Response(status, [("content-type", "application/json"), *fields], f"body-{key}")

    async def discard(self, body):
        self.discarded.append(body)


def _request(session=None):
    headers = [("x-api-key", "client"), ("content-type", "application/json")]
    if session:
        headers.append(("x-claude-code-session-id", session))
    body = json.dumps({"model": "claude-x", "messages": []}).encode()

    return Request("POST", "/v1/messages", "", Headers(headers), read_body(body))


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
    reset = Headers(
        [
            ("anthropic-ratelimit-tokens-remaining", "0"),
            ("anthropic-ratelimit-tokens-reset", "2027-01-15T08:00:30Z"),
            ("anthropic-ratelimit-requests-remaining", "5"),
            ("anthropic-ratelimit-requests-reset", "2027-01-15T09:00:00Z"),
        ]
    )
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
    services.state.cooldowns["anthropic:claude-x"].clear()
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
    assert services.state.cooldowns.get("anthropic:claude-x", {}) == {}


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
    cooldowns = Cooldowns("anthropic", ["anthropic-x"], services, "claude-x")
    asyncio.run(cooldowns.cool("anthropic-x", NOW + 5, NOW))
    assert asyncio.run(cooldowns.current(NOW + 1)) == {"anthropic-x": NOW + 5}
    services.state.cooldowns_read_at.clear()
    assert asyncio.run(cooldowns.current(NOW + 6)) == {}


@pytest.mark.parametrize(
    "value, wait",
    [
        ("12", 12),
        (" 1.5 ", 1.5),
        ("0", 0),
        ("99999999999", MAX_COOLDOWN_SECONDS),  # years: an hour at most
        pytest.param("9" * 5000, MAX_COOLDOWN_SECONDS, id="5000-digits"),
        ("Thu, 14 Jan 2027 08:00:40 GMT", 40),
        ("Thu, 14 Jan 2127 08:00:00 GMT", MAX_COOLDOWN_SECONDS),
        ("\u00b2", 30),
        ("\u0663", 30),
        ("-5", 30),
        ("1e3", 30),
        ("soon", 30),
        ("", 30),  # not RFC 9110's: the default
    ],
)
def test_retry_after_is_read_as_rfc_9110_writes_it_and_bounded(value, wait):
    now = datetime.fromisoformat("2027-01-14T08:00:00+00:00").timestamp()
    assert cooldown_until(429, Headers([("retry-after", value)]), now) == now + wait


def test_a_cooldown_from_ratelimit_reset_is_bounded_too():
    now = datetime.fromisoformat("2027-01-14T08:00:00+00:00").timestamp()
    far = Headers(
        [("anthropic-ratelimit-tokens-remaining", "0"), ("anthropic-ratelimit-tokens-reset", "2999-01-01T00:00:00Z")]
    )
    assert cooldown_until(429, far, now) == now + MAX_COOLDOWN_SECONDS


def test_odd_retry_afters_fail_over_to_the_next_key_instead_of_a_500():
    """ "²" passed str.isdigit(), then float() refused it; 99999999999 s made the KV write
    fail and cooled the key for 3,000 years."""
    transport = ScriptedTransport(
        {"sk-one": 429, "sk-two": 429},
        headers_by_key={"sk-one": [("retry-after", "\u00b2")], "sk-two": [("retry-after", "99999999999")]},
    )
    services = Services(transport=transport, kv=MemoryKV())
    assert [_send(services).status for _ in range(3)] == [200] * 3
    assert transport.calls.count("sk-one") == 1 and transport.calls.count("sk-two") == 1
    cooling = services.state.cooldowns["anthropic:claude-x"]
    assert len(cooling) == 2 and max(cooling.values()) <= time.time() + MAX_COOLDOWN_SECONDS
    assert all(1 <= ttl <= MAX_COOLDOWN_SECONDS for _, ttl in services.kv.puts)


def test_a_failing_kv_never_fails_a_request():
    transport = ScriptedTransport({"sk-one": 429}, headers=[("retry-after", "300")])
    services = Services(transport=transport, kv=MemoryKV(failing=True))
    assert [_send(services).status for _ in range(4)] == [200] * 4
    assert transport.calls.count("sk-one") == 1  # cooling in this isolate all the same
    assert services.kv.gets and services.kv.puts


def test_cooldowns_written_at_once_by_two_isolates_are_both_kept():
    """One KV entry per provider, read and written back, lost the cool-down another
    isolate wrote in between."""
    kv = MemoryKV()
    ids = [key.id for key in pool("anthropic", KEYS)]
    first, second = (
        Cooldowns("anthropic", ids, Services(transport=None, kv=kv, state=IsolateState()), "claude-x") for _ in range(2)
    )

    async def both():
        await asyncio.gather(first.current(NOW), second.current(NOW))
        await asyncio.gather(first.cool(ids[0], NOW + 60, NOW), second.cool(ids[1], NOW + 90, NOW))

    asyncio.run(both())
    third = Cooldowns("anthropic", ids, Services(transport=None, kv=kv, state=IsolateState()), "claude-x")
    assert asyncio.run(third.current(NOW + 1)) == {ids[0]: NOW + 60, ids[1]: NOW + 90}


def test_a_storm_of_429s_on_one_key_writes_its_cooldown_once():
    """Every request in flight on a key gets its 429 at once; KV takes one write a second a key."""
    transport = ScriptedTransport({"sk-one": 429, "sk-two": 429, "sk-three": 429}, headers=[("retry-after", "30")])
    services = Services(transport=transport, kv=MemoryKV())

    async def storm():
        return await asyncio.gather(*(handle(_request("one-session"), ENV, services) for _ in range(50)))

    answers = asyncio.run(storm())
    assert {answer.status for answer in answers} == {429}
    writes = Counter(key for key, _ in services.kv.puts)
    assert len(writes) == 3 and set(writes.values()) == {1}, writes
    assert len(services.kv.gets) == len(KEYS)  # one read of the pool, not one per request


def test_an_isolate_writes_no_cooldown_that_kv_already_holds():
    kv = MemoryKV()
    ids = [key.id for key in pool("anthropic", KEYS)]
    first = Cooldowns("anthropic", ids, Services(transport=None, kv=kv, state=IsolateState()), "claude-x")
    asyncio.run(first.cool(ids[0], NOW + 60, NOW))
    other = Cooldowns("anthropic", ids, Services(transport=None, kv=kv, state=IsolateState()), "claude-x")
    asyncio.run(other.current(NOW + 2))
    asyncio.run(other.cool(ids[0], NOW + 60.5, NOW + 2))  # its own 429, the same cool-down
    assert len(kv.puts) == 1
    asyncio.run(other.cool(ids[0], NOW + 300, NOW + 2 + KV_WRITE_INTERVAL_SECONDS))  # a longer one
    assert len(kv.puts) == 2 and asyncio.run(other.current(NOW + 3))[ids[0]] == NOW + 300


def test_the_shared_cooldowns_are_read_once_per_refresh_with_one_get_per_key():
    kv = MemoryKV()
    ids = [key.id for key in pool("anthropic", KEYS)]
    cooldowns = Cooldowns("anthropic", ids, Services(transport=None, kv=kv), "claude-x")
    for moment in (NOW, NOW + 1, NOW + KV_REFRESH_SECONDS - 0.1):
        asyncio.run(cooldowns.current(moment))
    assert sorted(kv.gets) == sorted(f"cooldown:anthropic:{key_id}:claude-x" for key_id in ids)
    asyncio.run(cooldowns.current(NOW + KV_REFRESH_SECONDS))
    assert len(kv.gets) == 2 * len(ids)


@pytest.mark.parametrize(
    "model, family",
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4"),
        ("claude-sonnet-4-5", "claude-sonnet-4"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-1", "claude-opus-4"),
        ("claude-haiku-4-5", "claude-haiku-4"),
        ("claude-3-5-haiku-20241022", "claude-haiku-3-5"),
        ("claude-3-haiku-20240307", "claude-haiku-3"),
        ("claude-3-7-sonnet-latest", "claude-sonnet-3-7"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("Claude-Sonnet-4-5", "claude-sonnet-4"),
    ],
)
def test_models_that_share_a_providers_limits_share_a_class(model, family):
    assert keys.model_class(model) == family


def test_only_generating_calls_that_name_a_model_have_a_scope():
    assert keys.scope_of("/v1/messages", "claude-sonnet-4-5") == "claude-sonnet-4"
    assert keys.scope_of("/v1/messages/count_tokens", "claude-sonnet-4-5") is None
    assert keys.scope_of("/v1/models", None) is None
    assert keys.scope_of("/models", None) is None
    assert keys.scope_of("/v1/files", None) is None
    assert len(keys.scope_of("/v1/messages", "m" * 100_000)) == keys.MODEL_CLASS_CHARS


def _call(path, model=None, method="POST"):
    headers = [("x-api-key", "client"), ("content-type", "application/json")]
    body = json.dumps({"model": model, "messages": []}).encode() if model else b""
    return Request(method, path, "", Headers(headers), read_body(body))


class ByModelTransport(ScriptedTransport):
    """429 for Messages calls of `model` on `key` (as a provider's per-class limit would),
    with an exhausted output-tokens limit; any other call answered 200."""

    def __init__(self, key, model):
        super().__init__()
        self.limited, self.paths = (key, model), []

    async def send(self, method, url, headers, body, timeout=None):
        await asyncio.sleep(0)
        key = dict(headers)["x-api-key"]
        self.calls.append(key)
        self.paths.append(url.split("//", 1)[1].split("/", 1)[1])
        model = json.loads(body).get("model") if body else None
        if (key, model) == self.limited and url.endswith("/v1/messages"):
            fields = [("retry-after", "60"), ("anthropic-ratelimit-output-tokens-remaining", "0")]
            return Response(429, [("content-type", "application/json"), *fields], "limited")
        return Response(200, [("content-type", "application/json")], f"body-{key}")


def test_a_429_for_one_model_cools_its_key_for_that_class_only():
    transport = ByModelTransport("sk-one", "claude-opus-4-1")
    services = Services(transport=transport, kv=MemoryKV())

    def ask(path, model=None, method="POST"):
        return asyncio.run(handle(_call(path, model, method), ENV, services))

    assert [ask("/v1/messages", "claude-opus-4-1").status for _ in range(3)] == [200] * 3
    assert transport.calls.count("sk-one") == 1  # its 429, then skipped for Opus
    cooling = services.state.cooldowns["anthropic:claude-opus-4"]
    assert cooling == {pool("anthropic", KEYS)[0].id: pytest.approx(time.time() + 60, abs=5)}
    [(kv_key, _)] = services.kv.puts
    assert kv_key.endswith(":claude-opus-4") and "output-tokens" in services.kv.values[kv_key]

    transport.calls.clear()
    for _ in range(3):  # another model of the class: never the cooled key
        assert ask("/v1/messages", "claude-opus-4-5").status == 200
    assert "sk-one" not in transport.calls
    for _ in range(3):  # another class: every key, the cooled one too
        assert ask("/v1/messages", "claude-sonnet-4-5").status == 200
    assert transport.calls.count("sk-one") == 1
    transport.calls.clear()  # count_tokens and the catalogue: the same
    for _ in range(3):
        assert ask("/v1/messages/count_tokens", "claude-opus-4-1").status == 200
        assert ask("/v1/models", method="GET").status == 200
    assert "sk-one" in transport.calls and len(transport.calls) == 6


def test_a_429_on_count_tokens_or_the_catalogue_fails_over_without_cooling():
    transport = ScriptedTransport({"sk-one": 429}, headers=[("retry-after", "60")])
    services = Services(transport=transport, kv=MemoryKV())
    for _ in range(3):
        assert asyncio.run(handle(_call("/v1/messages/count_tokens", "claude-x"), ENV, services)).status == 200
        assert asyncio.run(handle(_call("/v1/models", method="GET"), ENV, services)).status == 200
    assert transport.calls.count("sk-one") == 2  # its turns, each a 429 that moved on to the next key
    assert all(not cooling for cooling in services.state.cooldowns.values()) and services.kv.puts == []


def test_an_isolate_forgets_idle_scopes_past_its_bound():
    services = Services(transport=None)
    for n in range(keys.MAX_SCOPES + 10):
        Cooldowns("anthropic", ["anthropic-x"], services, f"model-{n}")
    assert len(services.state.cooldowns) <= keys.MAX_SCOPES + 1
