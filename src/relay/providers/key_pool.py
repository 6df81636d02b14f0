"""Upstream key pools: which provider key serves a request, and which keys are cooling down.

A session stays on one key while that key is healthy, so its prompt cache stays warm
(rendezvous hashing: when a key cools down, only its sessions move, and they come back
when it recovers). Requests without a session take the keys in turn.

A 429 cools its key down for as long as the provider says (`retry-after`: seconds or an
HTTP-date, in ASCII as RFC 9110 writes them; else the reset time of an exhausted
`anthropic-ratelimit-*` limit; else a default), at most MAX_COOLDOWN_SECONDS: a provider
asking for years (`retry-after: 99999999999`) gets its key tried again after an hour, and
cooled again if it still answers 429.

Cool-downs live in the isolate and in Workers KV, so every isolate and location learns
that a key answered 429. The shared store is one KV entry per upstream key
(`cooldown:<provider>:<key id>`) holding the time its cool-down ends, and expiring with
it (KV keeps an entry at least 60 s; readers compare the time with their clock):

- Writes cannot lose each other. One entry per provider, read, changed and written back,
  dropped the cool-down another isolate wrote in between; an entry per key says only "this
  key cools until T", and two isolates that write it at once say nearly the same.
- Writes stay within KV's one write per second per key. An isolate writes an entry only
  when its cool-down ends more than KV_WRITE_SLACK_SECONDS later than KV is known to say
  (from its last read or write), and at most once per KV_WRITE_INTERVAL_SECONDS: a storm
  of 429s on one key (every request in flight on it) makes one write, not one each.
- Reads are bounded: at most once per KV_REFRESH_SECONDS per provider and isolate, one get
  per key of the pool, in parallel (a pool is a handful of keys, the operator's to set).
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


def _kv_key(provider: str, key_id: str) -> str:
    return f"cooldown:{provider}:{key_id}"


def _shared_until(raw: Any, now: float) -> float | None:
    """The end of a cool-down as a KV entry holds it (None: none, or unreadable)."""
    try:
        until = float(raw)
    except (TypeError, ValueError):
        return None
    return min(until, now + MAX_COOLDOWN_SECONDS) if math.isfinite(until) else None


class Cooldowns:
    """The cool-downs of one provider's keys, shared through KV when there is a KV binding."""

    def __init__(self, provider: str, key_ids: list[str], services: Services):
        self.provider = provider
        self.key_ids = key_ids
        self.services = services
        state = services.state
        self.local = state.cooldowns.setdefault(provider, {})
        self.shared = state.shared_cooldowns.setdefault(provider, {})

    async def current(self, now: float) -> dict[str, float]:
        """Key id -> cool until, for keys still cooling at `now`."""
        kv, state = self.services.kv, self.services.state
        if kv is not None and now - state.cooldowns_read_at.get(self.provider, float("-inf")) >= KV_REFRESH_SECONDS:
            state.cooldowns_read_at[self.provider] = now
            await self._read(kv, now)
        for key_id in [k for k, until in self.local.items() if until <= now]:
            del self.local[key_id]
        return dict(self.local)

    async def _read(self, kv: KeyValue, now: float) -> None:
        found = await asyncio.gather(
            *(kv.get(_kv_key(self.provider, key_id)) for key_id in self.key_ids), return_exceptions=True
        )
        failures = [raw for raw in found if isinstance(raw, BaseException)]
        if failures:
            log(
                f"{len(failures)} shared cool-downs of {self.provider} not read "
                f"({type(failures[0]).__name__}); this isolate's own view stands for them"
            )
        for key_id, raw in zip(self.key_ids, found):
            until = None if isinstance(raw, BaseException) else _shared_until(raw, now)
            if until is not None:
                self.local[key_id] = max(until, self.local.get(key_id, 0.0))
                known, written_at = self.shared.get(key_id, (0.0, float("-inf")))
                self.shared[key_id] = (max(until, known), written_at)

    async def cool(self, key_id: str, until: float, now: float) -> None:
        until = min(until, now + MAX_COOLDOWN_SECONDS)
        if until <= now:  # e.g. retry-after: 0
            return
        self.local[key_id] = max(until, self.local.get(key_id, 0.0))
        kv = self.services.kv
        known, written_at = self.shared.get(key_id, (0.0, float("-inf")))
        if kv is None or until <= known + KV_WRITE_SLACK_SECONDS or now - written_at < KV_WRITE_INTERVAL_SECONDS:
            return
        self.shared[key_id] = (until, now)  # before the write: a 429 meanwhile in this isolate sees it
        try:
            await kv.put(_kv_key(self.provider, key_id), repr(until), math.ceil(until - now))
        except Exception as exc:
            self.shared[key_id] = (known, now)  # KV does not hold it; tried again after the interval
            log(f"the cool-down of upstream key {key_id} not shared ({type(exc).__name__}); it holds in this isolate")
