"""D1 queries for virtual relay keys (schema: migrations/0001_relay_keys.sql, 0003_cache_policy.sql).

A key is stored only as its SHA-256 hash; the key itself exists once, in the answer to
its creation. The hash never leaves the database: every query selects the public
columns only, so a record is safe to hand to the admin API as it is.

Times are epoch seconds (float) in, ISO 8601 UTC strings out (times.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from typing import TypedDict

from relay.services import Database, Row
from relay.times import iso

# Every column but key_hash, in the order records show them.
_PUBLIC = (
    "id",
    "name",
    "billing_tag",
    "allowed_models",
    "rpm_limit",
    "max_concurrent_streams",
    "monthly_budget_usd",
    "cache_policy",
    "created_at",
    "expires_at",
    "revoked_at",
)
_SELECT = f"SELECT {', '.join(_PUBLIC)} FROM relay_keys"


class KeyRecord(TypedDict):
    """A relay key's public columns (times as ISO 8601 text), as the admin API shows them."""

    id: str
    name: str
    billing_tag: str | None
    allowed_models: list[str]
    rpm_limit: int | None
    max_concurrent_streams: int | None
    monthly_budget_usd: float | None
    cache_policy: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None


def key_hash(key: str) -> str:
    """The only form of a relay key that is stored (and that caches are keyed by)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh relay key: "rk-" and 40 URL-safe characters (240 random bits)."""
    return "rk-" + secrets.token_urlsafe(30)


# The form of every key new_key has made (it has never made another).
_KEY_FORM = re.compile(r"rk-[A-Za-z0-9_-]{40}")


def has_key_form(key: str) -> bool:
    """Whether `key` could be a D1 key: one of any other form is not, and costs no query."""
    return _KEY_FORM.fullmatch(key) is not None


def new_id() -> str:
    """A short public id, random and unrelated to the key (safe in logs and URLs)."""
    return "rk_" + secrets.token_hex(4)


def _record(row: Row) -> KeyRecord:
    budget = row.get("monthly_budget_usd")
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        billing_tag=row.get("billing_tag"),
        allowed_models=json.loads(row.get("allowed_models") or "[]"),
        rpm_limit=row.get("rpm_limit"),
        max_concurrent_streams=row.get("max_concurrent_streams"),
        monthly_budget_usd=None if budget is None else float(budget),  # D1 hands whole REALs back as ints
        cache_policy=row.get("cache_policy"),
        created_at=row["created_at"],
        expires_at=row.get("expires_at"),
        revoked_at=row.get("revoked_at"),
    )


async def _one(db: Database, column: str, value: str) -> KeyRecord | None:
    rows = await db.all(f"{_SELECT} WHERE {column} = ?", (value,))
    return _record(rows[0]) if rows else None


async def create_key(
    db: Database,
    *,
    name: str,
    now: float,
    billing_tag: str | None = None,
    allowed_models: Iterable[str] = (),
    rpm_limit: int | None = None,
    max_concurrent_streams: int | None = None,
    monthly_budget_usd: float | None = None,
    cache_policy: str | None = None,
    expires_at: float | None = None,
) -> tuple[KeyRecord, str]:
    """Store a new key; returns its record and the key itself (which is not stored).
    `now` and `expires_at` are epoch seconds."""
    key = new_key()
    models = json.dumps(list(allowed_models))
    budget = None if monthly_budget_usd is None else float(monthly_budget_usd)
    expires = None if expires_at is None else iso(expires_at)
    for attempt in range(3):
        key_id = new_id()
        try:
            await db.run(
                "INSERT INTO relay_keys (id, key_hash, name, billing_tag, allowed_models, rpm_limit, "
                "max_concurrent_streams, monthly_budget_usd, cache_policy, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    key_hash(key),
                    name,
                    billing_tag,
                    models,
                    rpm_limit,
                    max_concurrent_streams,
                    budget,
                    cache_policy,
                    iso(now),
                    expires,
                ),
            )
            break
        except Exception:
            # 32-bit ids can collide (rarely); anything else is not ours to retry.
            if attempt == 2 or await get_key(db, key_id) is None:
                raise
    record = await get_key(db, key_id)
    if record is None:  # D1 took the row: it is there to read
        raise LookupError(f"relay key {key_id} was stored but cannot be read back")
    return record, key


async def find_by_hash(db: Database, hashed: str) -> KeyRecord | None:
    """The record of the key with this hash (for authentication), or None."""
    return await _one(db, "key_hash", hashed)


async def get_key(db: Database, key_id: str) -> KeyRecord | None:
    return await _one(db, "id", key_id)


async def list_keys(db: Database) -> list[KeyRecord]:
    """Every key, oldest first (rowid keeps creation order within one second)."""
    return [_record(row) for row in await db.all(f"{_SELECT} ORDER BY created_at, rowid")]


async def revoke_key(db: Database, key_id: str, now: float) -> KeyRecord | None:
    """Revoke a key and return its record (None if there is no such key). Revoking
    again keeps the first revocation time."""
    await db.run("UPDATE relay_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (iso(now), key_id))
    return await get_key(db, key_id)


async def set_cache_policy(db: Database, key_id: str, policy: str | None) -> KeyRecord | None:
    """Set a key's prompt-cache policy (None: the relay default) and return its record
    (None if there is no such key)."""
    await db.run("UPDATE relay_keys SET cache_policy = ? WHERE id = ?", (policy, key_id))
    return await get_key(db, key_id)


# --- the audit log (migrations/0002_usage.sql, 0005_usage_basis.sql, 0006_gateway_signin.sql) ----------------

USAGE_COLUMNS = (
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
    "person_id",
    "person_email",
    "group_name",
)


class UsageRow(TypedDict):
    """One request's audit row (meter.py makes it), its columns as USAGE_COLUMNS names them."""

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
    person_id: str | None  # a signed-in person (identity/gateway_sessions.py), their email and group
    person_email: str | None
    group_name: str | None


# Rows arrive as one JSON array of arrays (one bound parameter, whatever their number: D1
# allows 100 per statement), which SQLite's json_each unpacks.
_INSERT_USAGE = (
    f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(USAGE_COLUMNS)))
    + " FROM json_each(?)"
)


async def insert_usage(db: Database, *rows: UsageRow) -> None:
    """Any number of rows in one statement: one D1 call, and one crossing of the runtime's
    boundary rather than a prepared statement per row."""
    values = [[row.get(name) for name in USAGE_COLUMNS] for row in rows]
    await db.run(_INSERT_USAGE, (json.dumps(values),))
