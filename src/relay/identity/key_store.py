"""D1 queries for virtual relay keys (schema: migrations/0001_relay_keys.sql, 0003_cache_policy.sql).

A key is stored only as its SHA-256 hash; the key itself exists once, in the answer to
its creation. The hash never leaves the database: every query selects the public
columns only, so a record is safe to hand to the admin API as it is.

Times are epoch seconds (float) in, ISO 8601 UTC strings ("2026-11-25T06:30:00Z") out.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from relay.services import Database

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


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 date or time; without an offset it is taken as UTC.
    Raises ValueError when `text` is not ISO 8601."""
    when = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _record(row: dict) -> dict:
    record = {name: row.get(name) for name in _PUBLIC}
    record["allowed_models"] = json.loads(row.get("allowed_models") or "[]")
    if record["monthly_budget_usd"] is not None:  # D1 hands whole REALs back as ints
        record["monthly_budget_usd"] = float(record["monthly_budget_usd"])
    return record


async def _one(db: Database, column: str, value: str) -> dict | None:
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
) -> tuple[dict, str]:
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
    return await get_key(db, key_id), key


async def find_by_hash(db: Database, hashed: str) -> dict | None:
    """The record of the key with this hash (for authentication), or None."""
    return await _one(db, "key_hash", hashed)


async def get_key(db: Database, key_id: str) -> dict | None:
    return await _one(db, "id", key_id)


async def list_keys(db: Database) -> list[dict]:
    """Every key, oldest first (rowid keeps creation order within one second)."""
    return [_record(row) for row in await db.all(f"{_SELECT} ORDER BY created_at, rowid")]


async def revoke_key(db: Database, key_id: str, now: float) -> dict | None:
    """Revoke a key and return its record (None if there is no such key). Revoking
    again keeps the first revocation time."""
    await db.run("UPDATE relay_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (iso(now), key_id))
    return await get_key(db, key_id)


async def set_cache_policy(db: Database, key_id: str, policy: str | None) -> dict | None:
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
# Rows arrive as one JSON array of arrays (one bound parameter, whatever their number: D1
# allows 100 per statement), which SQLite's json_each unpacks.
_INSERT_USAGE = (
    f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(USAGE_COLUMNS)))
    + " FROM json_each(?)"
)


async def insert_usage(db: Database, *rows: dict) -> None:
    """Any number of rows in one statement: one D1 call, and one crossing of the runtime's
    boundary rather than a prepared statement per row."""
    values = [[row.get(name) for name in USAGE_COLUMNS] for row in rows]
    await db.run(_INSERT_USAGE, (json.dumps(values),))
