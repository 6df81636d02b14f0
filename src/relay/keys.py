"""Upstream key pools: which provider key serves a request, and which keys are cooling down.

A session stays on one key while that key is healthy, so its prompt cache stays warm
(rendezvous hashing: when a key cools down, only its sessions move, and they come back
when it recovers). Requests without a session take the keys in turn.

Cool-downs live in the isolate and in Workers KV, so every isolate and location learns
that a key answered 429. KV is eventually consistent (up to about a minute between
locations): another location may still try a cooling key once, get its own 429, and
fail over transparently; nothing is lost. A cool-down ends by itself when its time is up.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from .http import Headers
from .services import Services

RETRYABLE = frozenset({429, 500, 502, 503, 504, 529})
# Cool-down when the upstream does not say how long (seconds).
DEFAULT_COOLDOWN = {429: 30.0, 529: 15.0}
DEFAULT_SERVER_ERROR_COOLDOWN = 5.0
# How long an isolate trusts its copy of the shared cool-downs before reading KV again.
KV_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class UpstreamKey:
    provider: str
    id: str  # short and non-secret: what logs and usage rows show
    secret: str = field(repr=False)


def pool(provider: str, secrets: tuple[str, ...]) -> tuple[UpstreamKey, ...]:
    """A provider's keys with their ids (a hash of each), made when the settings are parsed,
    once per isolate (routing.Provider.keys), not per request."""
    return tuple(UpstreamKey(provider, f"{provider}-{hashlib.sha256(s.encode()).hexdigest()[:8]}", s)
                 for s in secrets)


def preference(keys: tuple[UpstreamKey, ...], session: Optional[str], turn: int) -> list[UpstreamKey]:
    """All keys, the one to try first first."""
    if session:
        def weight(key: UpstreamKey) -> bytes:
            return hashlib.sha256(f"{session}\n{key.id}".encode()).digest()
        return sorted(keys, key=weight, reverse=True)
    start = turn % len(keys) if keys else 0
    return list(keys[start:] + keys[:start])


def _reset_time(value: str) -> Optional[float]:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def cooldown_until(status: int, headers: Headers, now: float) -> float:
    """When a key that answered `status` may be tried again: retry-after, else the reset
    time of an exhausted anthropic-ratelimit-* limit, else a default for the status."""
    retry_after = (headers.get("retry-after") or "").strip()
    if retry_after.replace(".", "", 1).isdigit():
        return now + float(retry_after)
    resets = []
    for name, value in headers.items():
        if name.startswith("anthropic-ratelimit-") and name.endswith("-remaining") and value.strip() == "0":
            reset = headers.get(name[: -len("-remaining")] + "-reset")
            moment = _reset_time(reset) if reset else None
            if moment is not None:
                resets.append(moment)
    if resets:
        return max(max(resets), now + 1.0)
    return now + DEFAULT_COOLDOWN.get(status, DEFAULT_SERVER_ERROR_COOLDOWN)


def _kv_key(provider: str) -> str:
    return f"cooldown:{provider}"


class Cooldowns:
    """The cool-downs of one provider's keys, shared through KV when there is a KV binding."""

    def __init__(self, provider: str, services: Services):
        self.provider = provider
        self.services = services
        self.local = services.state.cooldowns.setdefault(provider, {})

    async def current(self, now: float) -> dict[str, float]:
        """Key id -> cool until, for keys still cooling at `now`."""
        kv, state = self.services.kv, self.services.state
        if kv is not None and now - state.cooldowns_read_at.get(self.provider, float("-inf")) >= KV_REFRESH_SECONDS:
            state.cooldowns_read_at[self.provider] = now
            self._merge(await kv.get(_kv_key(self.provider)))
        for key_id in [k for k, until in self.local.items() if until <= now]:
            del self.local[key_id]
        return dict(self.local)

    async def cool(self, key_id: str, until: float, now: float) -> None:
        if until <= now:  # e.g. retry-after: 0
            return
        self.local[key_id] = max(until, self.local.get(key_id, 0.0))
        kv = self.services.kv
        if kv is None:
            return
        self._merge(await kv.get(_kv_key(self.provider)))
        live = {k: u for k, u in self.local.items() if u > now}
        await kv.put(_kv_key(self.provider), json.dumps(live), int(max(live.values()) - now) + 1)

    def _merge(self, raw: Optional[str]) -> None:
        try:
            shared = json.loads(raw) if raw else {}
        except ValueError:
            return
        for key_id, until in shared.items():
            if isinstance(until, (int, float)):
                self.local[key_id] = max(float(until), self.local.get(key_id, 0.0))
