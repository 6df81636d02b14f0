"""What the platform lends the core, as plain-Python protocols.

The Workers adapter fills these from bindings (D1, KV, rate-limit bindings, fetch);
unit tests fill them with CPython stand-ins (sqlite3 runs the same SQL as D1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relay.http.messages import Transport


class Database(Protocol):
    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        """Rows of a query, as dicts."""

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement."""


class KeyValue(Protocol):
    """A store shared by every isolate and location, eventually consistent (Workers KV)."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl_seconds: int) -> None: ...


class RateLimiter(Protocol):
    async def allow(self, key: str) -> bool:
        """Count one request for `key`; False when its budget for the period is spent."""


class IsolateState:
    """What one isolate remembers between requests (module-global in the Worker,
    fresh per test): its settings, verified relay keys, upstream cool-downs, the
    round-robin turn."""

    def __init__(self) -> None:
        self.settings: Any = None  # config.Settings, once read (config.settings_for)
        self.relay_keys: dict[str, tuple[Any, float]] = {}  # key hash -> (its D1 record, fetched at) (auth.py)
        self.unknown_keys: dict[str, float] = {}  # key hash -> when D1 last had no such key
        self.cooldowns: dict[str, dict[str, float]] = {}  # provider -> {upstream key id: cool until}
        self.cooldowns_read_at: dict[str, float] = {}  # provider -> when KV was last read
        # provider -> {upstream key id: (cool until as KV holds it, as far as known; when written)}
        self.shared_cooldowns: dict[str, dict[str, tuple[float, float]]] = {}
        self.turn = 0
        self.usage_write_failures = 0  # audit rows D1 refused
        self.usage_group: list[dict] | None = None  # audit rows still taking others (usage.py)
        self.spend: dict[str, dict] = {}  # relay key id -> month's spend (limits.py)
        self.spend_caps: tuple[float, list] | None = None  # (read at, every spend cap) (spend_caps.py)
        self.token_limits: tuple[float, dict] | None = None  # (read at, owner -> limit) (token_rates.py)


class Background:
    """`Services.defer` off the Worker: each piece of work becomes a task, and a test
    awaits them all with `settle()` before it looks at what they wrote."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Future] = []

    def __call__(self, work: Awaitable[Any]) -> None:
        self._tasks.append(asyncio.ensure_future(work))

    async def settle(self) -> None:
        while self._tasks:
            await self._tasks.pop(0)


@dataclass
class Services:
    transport: Transport
    db: Database | None = None
    kv: KeyValue | None = None
    # Rate-limit bindings by their requests-per-minute tier (see limits.py).
    limiters: Mapping[int, RateLimiter] = field(default_factory=dict)
    state: IsolateState = field(default_factory=IsolateState)
    # Epoch seconds. In the Worker, the runtime's clock, which advances only across I/O.
    clock: Callable[[], float] = time.time
    # Work that must finish after the response is returned: ctx.waitUntil in the Worker.
    defer: Callable[[Awaitable[Any]], None] = field(default_factory=Background)
