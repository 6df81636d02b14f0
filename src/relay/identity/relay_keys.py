"""Who may use relay: the relay key a request presents, and what that key may do.

Keys come from two places: virtual keys in D1 (managed with the admin API; only their
hash is stored) and the optional static list in the RELAY_CLIENT_KEYS secret. A D1
lookup is cached in the isolate for RELAY_KEY_CACHE_SECONDS, so the hot path costs no
D1 round trip and a revocation takes effect within that time.

Anyone can send keys, so what they send must not cost D1 queries or push the keys that
work out of the cache. A key that does not have the form of relay's keys (store.new_key)
is refused without a query. The records D1 has and the hashes it has not are cached
apart: records come only from keys an admin made, misses from whoever sends a request,
so a flood of unknown keys costs a query each (one per cache window for a key retried)
and, past its own bound, evicts its oldest misses, never a record.
"""

from __future__ import annotations

import fnmatch
import functools
import hmac
from dataclasses import dataclass
from typing import TypeVar

from relay import times
from relay.config import Settings
from relay.http.errors import Refused
from relay.http.headers import bearer_token
from relay.http.messages import Headers
from relay.identity import access_tokens, gateway_sessions, key_store
from relay.identity.key_store import KeyRecord
from relay.services import Database, IsolateState, Services

# Bounds per isolate on the records cached (no more than D1 holds) and on the misses (few
# are needed: they spare a client that retries a bad key a query each time). Past its
# bound, a cache drops its oldest entry.
RECORDS_CACHED = 10_000
MISSES_CACHED = 1_000

_Entry = TypeVar("_Entry")


@dataclass(frozen=True)
class Caller:
    """An authenticated relay key, as the rest of the pipeline needs it."""

    key_id: str
    billing_tag: str | None = None
    allowed_models: tuple[str, ...] = ()
    rpm_limit: int | None = None
    max_concurrent_streams: int | None = None
    monthly_budget_usd: float | None = None
    cache_policy: str | None = None  # None: the relay-wide RELAY_CACHE_POLICY
    # A person signed in with the IdP (gateway_sessions.py) rather than a relay key: their
    # id (also key_id, for limits), email and groups, and the group whose policy applies.
    person_id: str | None = None
    person_email: str | None = None
    groups: tuple[str, ...] = ()
    group: str | None = None
    spend_capped: bool = False  # a spend cap of its key, tag or relay applies (limits/spend_caps.py)

    @property
    def budgeted(self) -> bool:
        """Its requests' costs count against a limit: relay must be able to read them."""
        return self.monthly_budget_usd is not None or self.spend_capped

    def may_use(self, model: str | None) -> bool:
        """With an allow-list, only a named model that matches it (None: the request names none)."""
        if not self.allowed_models:
            return True
        return model is not None and any(fnmatch.fnmatchcase(model, pattern) for pattern in self.allowed_models)


def presented_key(headers: Headers, surface: str = "anthropic") -> str | None:
    """The key from `x-api-key` (Anthropic SDKs) or `Authorization: Bearer` (OpenAI SDKs,
    Claude Code with ANTHROPIC_AUTH_TOKEN). A client that sends both is read in its own
    API's way: `x-api-key` first on the Anthropic surface, the bearer token on OpenAI's."""
    api_key = (headers.get("x-api-key") or "").strip() or None
    bearer = bearer_token(headers)
    return (bearer or api_key) if surface == "openai" else (api_key or bearer)


def _static_caller(hashed: str, static_keys: tuple[str, ...]) -> Caller | None:
    """A Caller when the key is one of RELAY_CLIENT_KEYS; every entry is compared, in constant time."""
    found = False
    for candidate in _hashes(static_keys):
        found |= hmac.compare_digest(hashed, candidate)
    return Caller(key_id=f"static-{hashed[:8]}") if found else None


@functools.lru_cache(maxsize=4)
def _hashes(static_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The static keys' hashes, made once per isolate (the settings are), not per request."""
    return tuple(key_store.key_hash(key) for key in static_keys)


async def _record(hashed: str, settings: Settings, db: Database, state: IsolateState, now: float) -> KeyRecord | None:
    cached = state.relay_keys.get(hashed)
    if cached is not None and now - cached[1] < settings.key_cache_seconds:
        return cached[0]
    missed = state.unknown_keys.get(hashed)
    if missed is not None and now - missed < settings.key_cache_seconds:
        return None
    record = await key_store.find_by_hash(db, hashed)
    if record is None:
        state.relay_keys.pop(hashed, None)
        _remember(state.unknown_keys, hashed, now, MISSES_CACHED)
    else:
        state.unknown_keys.pop(hashed, None)
        _remember(state.relay_keys, hashed, (record, now), RECORDS_CACHED)
    return record


def _remember(cache: dict[str, _Entry], hashed: str, entry: _Entry, limit: int) -> None:
    """`entry` as the newest of `cache` (a dict keeps insertion order), the oldest dropped past `limit`."""
    cache.pop(hashed, None)
    cache[hashed] = entry
    if len(cache) > limit:
        del cache[next(iter(cache))]


async def authenticate(
    headers: Headers, settings: Settings, services: Services, now: float, surface: str = "anthropic"
) -> Caller:
    """The caller a request's relay key names; raises Refused (401) for a missing, unknown,
    revoked or expired key."""
    key = presented_key(headers, surface)
    if not key:
        raise Refused(401, "missing relay key: send it as x-api-key or Authorization: Bearer")
    if settings.gateway is not None and access_tokens.has_token_form(key):
        return await _person(key, settings, services, now)
    hashed = key_store.key_hash(key)
    static = _static_caller(hashed, settings.client_keys)
    if static is not None:
        return static
    if not key_store.has_key_form(key):
        raise Refused(401, "invalid relay key")
    record = await _record(hashed, settings, services.db, services.state, now) if services.db is not None else None
    if record is None:
        raise Refused(401, "invalid relay key")
    if record["revoked_at"]:
        raise Refused(401, f"relay key {record['id']} has been revoked")
    expires_at = record["expires_at"]
    if expires_at and times.parse_time(expires_at) <= now:
        raise Refused(401, f"relay key {record['id']} has expired")
    return Caller(
        key_id=record["id"],
        billing_tag=record["billing_tag"],
        allowed_models=tuple(record["allowed_models"]),
        rpm_limit=record["rpm_limit"],
        max_concurrent_streams=record["max_concurrent_streams"],
        monthly_budget_usd=record["monthly_budget_usd"],
        cache_policy=record["cache_policy"],
    )


async def _person(token: str, settings: Settings, services: Services, now: float) -> Caller:
    """The signed-in person a relay access token names, under their group's policy;
    Refused (401) when the token or its session is not current."""
    gateway = settings.gateway
    assert gateway is not None
    claims = await gateway_sessions.bearer(gateway, services, token, now, settings.key_cache_seconds)
    policy = gateway.policy_for(claims.groups)
    return Caller(
        key_id=claims.person_id,
        billing_tag=policy.billing_tag if policy else None,
        allowed_models=policy.allowed_models if policy else (),
        cache_policy=policy.cache_policy if policy else None,
        person_id=claims.person_id,
        person_email=claims.email,
        groups=claims.groups,
        group=policy.group if policy else None,
    )
