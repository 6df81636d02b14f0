"""The audit log's table (migrations/0002_usage.sql, 0005, 0006, 0009): its columns, and writing
rows together with the rollups they add to (rollups.py) in one D1 batch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypedDict

from relay.services import Database
from relay.usage import rollups

COLUMNS = (
    "created_at",
    "day",
    "key_id",
    "billing_tag",
    "session_id",
    "client",
    "surface",
    "provider",
    "upstream_key_id",
    "method",
    "path",
    "model_requested",
    "model_served",
    "stream",
    "status",
    "error_type",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_creation_1h_tokens",
    "cache_read_tokens",
    "usage_basis",
    "cache_markers_added",
    "ttfb_ms",
    "total_ms",
    "cost_usd",
    "cache_savings_usd",
    "cost_nanos",
    "cache_savings_nanos",
    "person_id",
    "person_email",
    "group_name",
)


class UsageRow(TypedDict):
    """One request's audit row (meter.py makes it), its columns as COLUMNS names them."""

    created_at: str
    day: str
    key_id: str | None
    billing_tag: str | None
    session_id: str | None
    client: str | None
    surface: str
    provider: str | None
    upstream_key_id: str | None
    method: str
    path: str
    model_requested: str | None
    model_served: str | None
    stream: int
    status: int
    error_type: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_creation_tokens: int | None
    cache_creation_1h_tokens: int | None
    cache_read_tokens: int | None
    usage_basis: str | None
    cache_markers_added: int
    ttfb_ms: int
    total_ms: int
    cost_usd: float | None
    cache_savings_usd: float | None
    cost_nanos: int | None
    cache_savings_nanos: int | None
    person_id: str | None  # a signed-in person (identity/gateway_sessions.py), their email and group
    person_email: str | None
    group_name: str | None


# Rows arrive as one JSON array of arrays (one bound parameter, whatever their number: D1
# allows 100 per statement), which SQLite's json_each unpacks.
_INSERT = (
    f"INSERT INTO usage ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(COLUMNS)))
    + " FROM json_each(?)"
)


def insert_statement(rows: Sequence[UsageRow]) -> tuple[str, tuple[str]]:
    """The statement (sql, params) that adds `rows` to the audit log."""
    return _INSERT, (json.dumps([[row.get(name) for name in COLUMNS] for row in rows]),)


async def insert_usage(db: Database, *rows: UsageRow) -> None:
    """Any number of rows and what they add to each rollup: one D1 call (a batch, so one
    transaction: the rollups never disagree with the rows), and one crossing of the
    runtime's boundary rather than a prepared statement per row."""
    await db.batch([insert_statement(rows), *rollups.upserts(rows)])
