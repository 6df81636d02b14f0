"""CPython stand-ins for the platform services the core uses (see relay/services.py).

`SqliteDatabase` applies the project's own migrations to an in-memory SQLite, the
engine D1 runs, so the core's SQL is tested for real, with D1's limit on the length of
a value (a bound parameter, a string or blob: 2,000,000 bytes).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relay.http.messages import Response

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
D1_MAX_VALUE_BYTES = 2_000_000


class SqliteDatabase:
    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:")
        self.connection.row_factory = sqlite3.Row
        self.connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, D1_MAX_VALUE_BYTES)
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            self.connection.executescript(migration.read_text())

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        rows = [dict(row) for row in self.connection.execute(sql, tuple(params)).fetchall()]
        self.connection.commit()  # D1 commits each statement (one with RETURNING writes too)
        return rows

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, tuple(params))
        self.connection.commit()

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict]]:
        """D1's batch: the statements in one transaction, rolled back whole if one fails."""
        results = []
        try:
            for sql, params in statements:
                results.append([dict(row) for row in self.connection.execute(sql, tuple(params)).fetchall()])
        except BaseException:
            self.connection.rollback()
            raise
        self.connection.commit()
        return results


class CountingDatabase(SqliteDatabase):
    """A SqliteDatabase that keeps each statement it was sent, in order: a test counts the
    round trips a request costs (each `all` or `run` is one D1 call in the Worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.statements: list[str] = []

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        self.statements.append(sql)
        return await super().all(sql, params)

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.statements.append(sql)
        await super().run(sql, params)

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict]]:
        self.statements.extend(sql for sql, _ in statements)
        return await super().batch(statements)

    def calls(self, table: str) -> int:
        """The statements sent so far that name `table`."""
        return sum(f" {table} " in f" {sql} " for sql in self.statements)


class MemoryKV:
    """Workers KV in memory, counting its calls. Each call lets other tasks run first (the
    binding's calls are I/O), so concurrent requests interleave as they do in an isolate;
    `failing` makes every call raise, as during a KV outage."""

    def __init__(self, failing: bool = False) -> None:
        self.values: dict[str, str] = {}
        self.gets: list[str] = []
        self.puts: list[tuple[str, int]] = []  # (key, ttl_seconds)
        self.failing = failing

    async def get(self, key: str) -> str | None:
        await asyncio.sleep(0)
        self.gets.append(key)
        if self.failing:
            raise ConnectionError("KV unavailable")
        return self.values.get(key)

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        await asyncio.sleep(0)
        self.puts.append((key, ttl_seconds))
        if self.failing:
            raise ConnectionError("KV unavailable")
        self.values[key] = value


class CountingLimiter:
    """Allows `limit` requests per key, then refuses (one window, never reset)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    async def allow(self, key: str) -> bool:
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key] <= self.limit


class RecordingTransport:
    """An upstream that answers every request 200 with an empty JSON object, and records
    each (method, url, header fields, body) it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, list[tuple[str, str]], bytes | None]] = []

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes | None, timeout: float | None = None
    ) -> Response:
        self.sent.append((method, url, headers, body))
        return Response(200, [("content-type", "application/json")], b"{}")

    async def discard(self, body: Any) -> None:
        pass
