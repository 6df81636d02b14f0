"""What the platform lends the core, as plain-Python protocols.

The Workers adapter fills these from bindings (D1, KV, rate-limit bindings, fetch);
unit tests fill them with CPython stand-ins (sqlite3 runs the same SQL as D1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from relay.http.messages import Transport

if TYPE_CHECKING:  # these modules import this one
    from relay.config import Settings
    from relay.identity.key_store import KeyRecord
    from relay.limits.key_limits import MonthSpend
    from relay.usage.audit_log import UsageRow

# A row as D1 hands it back: column name -> SQL value (None, int, float or str).
Row = dict[str, Any]


class Database(Protocol):
    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a query, as dicts."""

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Execute a statement."""

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """Run (sql, params) statements in order as one transaction (D1's batch: one call, all
        or nothing, and its reads see one state); the rows of each, as dicts."""


T = TypeVar("T")

# Pauses (seconds) between the tries of a statement SQLite refused for a lock, under a second in all.
BUSY_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.4)


async def unlocked(statement: Callable[[], Awaitable[T]]) -> T:
    """`statement()`, tried again while SQLite answers SQLITE_BUSY. A statement refused for a
    lock never ran, so another try cannot apply a write twice (a write may be an `all`: one
    with RETURNING). Local D1 answers so when two `wrangler dev` share one database file and
    one's statement meets the other's transaction."""
    for pause in BUSY_PAUSES:
        try:
            return await statement()
        except Exception as error:
            if "SQLITE_BUSY" not in str(error):
                raise
        await asyncio.sleep(pause)
    return await statement()


class KeyValue(Protocol):
    """A store shared by every isolate and location, eventually consistent (Workers KV)."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str, ttl_seconds: int) -> None: ...


class ObjectStore(Protocol):
    """A bucket of objects (R2), where the usage export writes its files."""

    async def put(self, key: str, body: str) -> None: ...


class RateLimiter(Protocol):
    async def allow(self, key: str) -> bool:
        """Count one request for `key`; False when its budget for the period is spent."""


class IsolateState:
    """What one isolate remembers between requests (module-global in the Worker,
    fresh per test): its settings, verified relay keys, upstream cool-downs, the
    round-robin turn."""

    def __init__(self) -> None:
        self.settings: Settings | None = None  # once read (config.settings_for)
        # key hash -> (its D1 record, fetched at) (relay_keys.py)
        self.relay_keys: dict[str, tuple[KeyRecord, float]] = {}
        self.unknown_keys: dict[str, float] = {}  # key hash -> when D1 last had no such key
        self.cooldowns: dict[str, dict[str, float]] = {}  # provider -> {upstream key id: cool until}
        self.cooldowns_read_at: dict[str, float] = {}  # provider -> when KV was last read
        # provider -> {upstream key id: (cool until as KV holds it, as far as known; when written)}
        self.shared_cooldowns: dict[str, dict[str, tuple[float, float]]] = {}
        self.turn = 0
        self.access_tokens: dict[str, tuple[str, float]] = {}  # upstream key id -> (cloud access token, expires at)
        self.usage_write_failures = 0  # audit rows D1 refused
        self.usage_group: list[UsageRow] | None = None  # audit rows still taking others (meter.py)
        self.spend: dict[str, MonthSpend] = {}  # relay key id -> month's spend (key_limits.py)
        self.gateway_sessions: dict[str, tuple[bool, float]] = {}  # session id -> (open, checked at)
        self.oidc: dict[str, tuple[Any, float]] = {}  # the IdP's metadata and keys -> (value, fetched at)
        self.telemetry_failures = 0  # telemetry a collector did not take (otlp_relay.py)
        self.spend_caps: tuple[float, list[Any]] | None = None  # (read at, every spend cap) (spend_caps.py)
        self.token_limits: tuple[float, dict[str, Any]] | None = None  # (read at, owner -> limit) (token_rates.py)
        # (minute, {rate-limit name: requests still paid for}) (key_limits.py)
        self.rate_batches: tuple[int, dict[str, int]] = (0, {})


class Background:
    """`Services.defer` off the Worker: each piece of work becomes a task, and a test
    awaits them all with `settle()` before it looks at what they wrote."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Future[Any]] = []

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
    exports: ObjectStore | None = None  # the usage export's bucket (usage/export.py)
    # Rate-limit bindings by their requests-per-minute tier (see key_limits.py).
    limiters: Mapping[int, RateLimiter] = field(default_factory=dict)
    state: IsolateState = field(default_factory=IsolateState)
    # Epoch seconds. In the Worker, the runtime's clock, which advances only across I/O.
    clock: Callable[[], float] = time.time
    # Work that must finish after the response is returned: ctx.waitUntil in the Worker.
    defer: Callable[[Awaitable[Any]], None] = field(default_factory=Background)
