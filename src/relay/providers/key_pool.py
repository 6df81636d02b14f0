"""Upstream key pools: which provider key serves a request, and which keys are cooling down.

A session stays on one key while that key is healthy, so its prompt cache stays warm
(rendezvous hashing: when a key cools down, only its sessions move, and they come back
when it recovers). Requests without a session take the keys in turn.

A 429 cools its key down for as long as the provider says (`retry-after`: seconds or an
HTTP-date, in ASCII as RFC 9110 writes them; else the reset time of an exhausted
`anthropic-ratelimit-*` limit; else a default), at most MAX_COOLDOWN_SECONDS: a provider
asking for years (`retry-after: 99999999999`) gets its key tried again after an hour, and
cooled again if it still answers 429.

A cool-down holds only what ran out. Providers count their limits per model class
(Anthropic: every Claude Sonnet 4.x shares one set of limits on a key, Opus 4.x another;
OpenAI: per model), and a 429 for one class says nothing of another: a key cools for the
class of the model it was asked for (`model_class`), its `scope`, and goes on serving the
others. Within a class, each kind of limit (requests, input tokens, output tokens, tokens)
stops every generating call, since each such call spends some of each; the kind that ran
out (the `anthropic-ratelimit-<kind>-remaining: 0` of the 429) is kept beside the time, in
logs and in the message a client gets when every key of the class is cooling. Calls that
spend no generation budget never cool a key nor wait for one (`scope_of` is None): the
model catalogue (`/v1/models`), count_tokens (Anthropic limits it apart, and a client
counting tokens must not be told to wait by another call's 429), and calls that name no
model. A 429 on one of those still fails over to the next key.

Cool-downs live in the isolate and in Workers KV, so every isolate and location learns
that a key answered 429. The shared store is one KV entry per upstream key and scope
(`cooldown:<provider>:<key id>:<model class>`) holding the time its cool-down ends and
the kind of limit that ran out, and expiring with it (KV keeps an entry at least 60 s;
readers compare the time with their clock):

- Writes cannot lose each other. One entry per provider, read, changed and written back,
  dropped the cool-down another isolate wrote in between; an entry per key says only "this
  key cools until T", and two isolates that write it at once say nearly the same.
- Writes stay within KV's one write per second per key. An isolate writes an entry only
  when its cool-down ends more than KV_WRITE_SLACK_SECONDS later than KV is known to say
  (from its last read or write), and at most once per KV_WRITE_INTERVAL_SECONDS: a storm
  of 429s on one key (every request in flight on it) makes one write, not one each.
- Reads are bounded: at most once per KV_REFRESH_SECONDS per provider, scope and isolate,
  one get per key of the pool, in parallel (a pool is a handful of keys, the operator's to
  set; the scopes read are the model classes clients use).
  A get of an entry that is not there is a cheap read; a list by prefix would be one call
  but is billed as a write is, and the core is lent only get and put (services.KeyValue).

KV is eventually consistent (up to about a minute between locations): another location may
still try a cooling key once, get its own 429, and fail over transparently; nothing is
lost. A KV failure (an outage, a refused write) never fails a request: it is logged, and
the isolate goes on with its own view. A cool-down ends by itself when its time is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from relay.http.messages import Headers
from relay.log import log
from relay.services import KeyValue, Services
from relay.times import parse_time

RETRYABLE = frozenset({429, 500, 502, 503, 504, 529})
# Cool-down when the upstream does not say how long (seconds).
DEFAULT_COOLDOWN = {429: 30.0, 529: 15.0}
DEFAULT_SERVER_ERROR_COOLDOWN = 5.0
MAX_COOLDOWN_SECONDS = 3600.0
# How long an isolate trusts its copy of the shared cool-downs before reading KV again.
KV_REFRESH_SECONDS = 5.0
# A cool-down is written to KV only if it ends this much later than KV is known to say...
KV_WRITE_SLACK_SECONDS = 1.0
# ... and an entry at most once in this long by one isolate (KV: one write a second a key).
KV_WRITE_INTERVAL_SECONDS = 1.0
# retry-after's delta-seconds (RFC 9110: 1*DIGIT; a decimal fraction is taken too).
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Upstream paths whose calls never cool a key nor wait for one (see the module's docstring).
# Scopes an isolate keeps cool-downs for before it forgets those with none live: the model
# names are the clients', and a client inventing one per request must not grow the isolate.
MAX_SCOPES = 256
NEVER_COOLED = frozenset({"/v1/models", "/models", "/v1/messages/count_tokens"})
# A model class is at most this long (it is part of a KV key, which holds 512 bytes).
MODEL_CLASS_CHARS = 200
# Claude model names: claude-sonnet-4-5-20250929 (family, then version) and the older
# claude-3-5-haiku-20241022 (version, then family).
_CLAUDE = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:[-.]\d+)*(?:-\d{8}|-latest)?")
_CLAUDE_LEGACY = re.compile(r"claude-(\d+)(?:[-.](\d))?-(opus|sonnet|haiku)(?:-\d{8}|-latest)?")
_DATED = re.compile(r"(.+?)(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)")


@dataclass(frozen=True)
class UpstreamKey:
    provider: str
    id: str  # short and non-secret: what logs and usage rows show
    secret: str = field(repr=False)


def pool(provider: str, secrets: tuple[str, ...]) -> tuple[UpstreamKey, ...]:
    """A provider's keys with their ids (a hash of each), made when the settings are parsed,
    once per isolate (routing.Provider.keys), not per request."""
    return tuple(UpstreamKey(provider, f"{provider}-{hashlib.sha256(s.encode()).hexdigest()[:8]}", s) for s in secrets)


def preference(keys: tuple[UpstreamKey, ...], session: str | None, turn: int) -> list[UpstreamKey]:
    """All keys, the one to try first first."""
    if session:

        def weight(key: UpstreamKey) -> bytes:
            return hashlib.sha256(f"{session}\n{key.id}".encode()).digest()

        return sorted(keys, key=weight, reverse=True)
    start = turn % len(keys) if keys else 0
    return list(keys[start:] + keys[:start])


def model_class(model: str) -> str:
    """The set of models whose calls a provider counts against one set of limits on a key:
    a Claude family and major version from 4 on ("claude-sonnet-4" for every Sonnet 4.x),
    family and version before it (Anthropic limits Haiku 3 and 3.5 apart); any other model
    by its name without a date or "-latest" (OpenAI limits each model)."""
    model = model.strip().lower()[:MODEL_CLASS_CHARS]
    match = _CLAUDE.fullmatch(model)
    if match:
        return f"claude-{match.group(1)}-{match.group(2)}"
    match = _CLAUDE_LEGACY.fullmatch(model)
    if match:
        major, minor, family = match.groups()
        return f"claude-{family}-{major}" + (f"-{minor}" if minor else "")
    match = _DATED.fullmatch(model)
    return match.group(1) if match else model


def scope_of(upstream_path: str, model: str | None) -> str | None:
    """What a call's cool-downs are counted in: its model's class; None for a call that
    never cools a key nor waits for one (no model, or a path in NEVER_COOLED)."""
    if upstream_path in NEVER_COOLED or not model:
        return None
    return model_class(model)


def exhausted_kind(headers: Headers) -> str | None:
    """The kind of limit a 429 says ran out ("output-tokens", "requests", ...): the first
    `anthropic-ratelimit-<kind>-remaining: 0`; None when it does not say."""
    for name, value in headers.items():
        if name.startswith("anthropic-ratelimit-") and name.endswith("-remaining") and value.strip() == "0":
            return name[len("anthropic-ratelimit-") : -len("-remaining")]
    return None


def _reset_time(value: str) -> float | None:
    try:
        return parse_time(value)
    except (ValueError, OverflowError, OSError):
        return None


def _retry_after(value: str, now: float) -> float | None:
    """When a `retry-after` value says to come back: delta-seconds or an HTTP-date, in
    ASCII; None for anything else ("²" passes str.isdigit(), and float() refuses it)."""
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return now + float(value)  # float(), not int(): no limit on the digits, inf at worst
    if not value or not value.isascii():
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def cooldown_until(status: int, headers: Headers, now: float) -> float:
    """When a key that answered `status` may be tried again: retry-after, else the reset
    time of an exhausted anthropic-ratelimit-* limit, else a default for the status; at
    most MAX_COOLDOWN_SECONDS from now."""
    until = _retry_after(headers.get("retry-after") or "", now)
    if until is None:
        resets = []
        for name, value in headers.items():
            if name.startswith("anthropic-ratelimit-") and name.endswith("-remaining") and value.strip() == "0":
                reset = headers.get(name[: -len("-remaining")] + "-reset")
                moment = _reset_time(reset) if reset else None
                if moment is not None:
                    resets.append(moment)
        until = (
            max(max(resets), now + 1.0) if resets else now + DEFAULT_COOLDOWN.get(status, DEFAULT_SERVER_ERROR_COOLDOWN)
        )
    return min(until, now + MAX_COOLDOWN_SECONDS)


def _shared_until(raw: Any, now: float) -> float | None:
    """The end of a cool-down as a KV entry holds it, "<until> <kind>" (None: none, or
    unreadable)."""
    try:
        until = float(str(raw).split(" ", 1)[0])
    except (TypeError, ValueError):
        return None
    return min(until, now + MAX_COOLDOWN_SECONDS) if math.isfinite(until) else None


class Cooldowns:
    """The cool-downs of one provider's keys for one scope (a model class), shared through
    KV when there is a KV binding. With no scope (`scope_of` is None) nothing cools and
    nothing is read: every key is always available."""

    def __init__(self, provider: str, key_ids: list[str], services: Services, scope: str | None):
        self.provider = provider
        self.scope = scope
        self.key_ids = key_ids
        self.services = services
        state = services.state
        self.pool = f"{provider}:{scope}"  # this isolate's name for the cool-downs of the scope
        if self.pool not in state.cooldowns and len(state.cooldowns) >= MAX_SCOPES:
            for name in [name for name, cooling in state.cooldowns.items() if not cooling]:
                del state.cooldowns[name]
                state.shared_cooldowns.pop(name, None)
                state.cooldowns_read_at.pop(name, None)
        self.local = state.cooldowns.setdefault(self.pool, {})
        self.shared = state.shared_cooldowns.setdefault(self.pool, {})

    def _kv_key(self, key_id: str) -> str:
        return f"cooldown:{self.provider}:{key_id}:{self.scope}"

    async def current(self, now: float) -> dict[str, float]:
        """Key id -> cool until, for keys still cooling at `now`."""
        if self.scope is None:
            return {}
        kv, state = self.services.kv, self.services.state
        if kv is not None and now - state.cooldowns_read_at.get(self.pool, float("-inf")) >= KV_REFRESH_SECONDS:
            state.cooldowns_read_at[self.pool] = now
            await self._read(kv, now)
        for key_id in [k for k, until in self.local.items() if until <= now]:
            del self.local[key_id]
        return dict(self.local)

    async def _read(self, kv: KeyValue, now: float) -> None:
        found = await asyncio.gather(*(kv.get(self._kv_key(key_id)) for key_id in self.key_ids), return_exceptions=True)
        failures = [raw for raw in found if isinstance(raw, BaseException)]
        if failures:
            log(
                f"{len(failures)} shared cool-downs of {self.provider} ({self.scope}) not read "
                f"({type(failures[0]).__name__}); this isolate's own view stands for them"
            )
        for key_id, raw in zip(self.key_ids, found):
            until = None if isinstance(raw, BaseException) else _shared_until(raw, now)
            if until is not None:
                self.local[key_id] = max(until, self.local.get(key_id, 0.0))
                known, written_at = self.shared.get(key_id, (0.0, float("-inf")))
                self.shared[key_id] = (max(until, known), written_at)

    async def cool(self, key_id: str, until: float, now: float, kind: str | None = None) -> None:
        """Cool `key_id` for this scope until `until`, because its `kind` of limit ran out."""
        until = min(until, now + MAX_COOLDOWN_SECONDS)
        if until <= now or self.scope is None:  # e.g. retry-after: 0; or a call that never cools
            return
        if until > self.local.get(key_id, 0.0):
            log(
                f"upstream key {key_id} cools for {self.scope} for {math.ceil(until - now)}s "
                f"({kind or 'limit not named'} ran out)"
            )
        self.local[key_id] = max(until, self.local.get(key_id, 0.0))
        kv = self.services.kv
        known, written_at = self.shared.get(key_id, (0.0, float("-inf")))
        if kv is None or until <= known + KV_WRITE_SLACK_SECONDS or now - written_at < KV_WRITE_INTERVAL_SECONDS:
            return
        self.shared[key_id] = (until, now)  # before the write: a 429 meanwhile in this isolate sees it
        try:
            await kv.put(self._kv_key(key_id), f"{until!r} {kind or 'unknown'}", math.ceil(until - now))
        except Exception as exc:
            self.shared[key_id] = (known, now)  # KV does not hold it; tried again after the interval
            log(f"the cool-down of upstream key {key_id} not shared ({type(exc).__name__}); it holds in this isolate")
