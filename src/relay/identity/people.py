"""D1 queries for sign-in (schema: migrations/0009_gateway_signin.sql): people, device
grants, browser trips to the IdP and sessions.

Codes and tokens arrive here already hashed (access_tokens.keyed_hash) and the IdP's
refresh token already sealed (sealed.py): this module never sees one in clear. Each
single-use row is taken with DELETE ... RETURNING (or an UPDATE naming the old value), so
two requests racing with the same code or refresh token cannot both succeed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from relay.identity.oidc import Identity
from relay.services import Database, Services
from relay.times import iso

_PEOPLE = "id, email, name, groups, created_at, seen_at"
Row = dict[str, Any]


def db_of(services: Services) -> Database:
    """The D1 database sign-in needs (gateway_routes answers 503 before any of it without one)."""
    if services.db is None:
        raise RuntimeError("sign-in needs relay's D1 database (bound as DB)")
    return services.db


def _person(row: Row) -> Row:
    return {**{name: row.get(name) for name in _PEOPLE.split(", ")}, "groups": json.loads(row.get("groups") or "[]")}


async def upsert_person(db: Database, identity: Identity, now: float) -> Row:
    """The person the IdP named, created at their first sign-in, their email, name and
    groups brought up to date at every later one."""
    for attempt in range(3):
        try:
            rows = await db.all(
                "INSERT INTO people (id, subject, email, name, groups, created_at, seen_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET email = excluded.email, name = excluded.name, "
                f"groups = excluded.groups, seen_at = excluded.seen_at RETURNING {_PEOPLE}",
                (
                    "p_" + secrets.token_hex(4),
                    identity.subject,
                    identity.email,
                    identity.name,
                    json.dumps(list(identity.groups)),
                    iso(now),
                    iso(now),
                ),
            )
            return _person(rows[0])
        except Exception:
            if attempt == 2:  # a 32-bit id collided three times: not a collision
                raise
    raise AssertionError("unreachable")


async def get_person(db: Database, person_id: str) -> Row | None:
    rows = await db.all(f"SELECT {_PEOPLE} FROM people WHERE id = ?", (person_id,))
    return _person(rows[0]) if rows else None


async def list_people(db: Database) -> list[Row]:
    rows = await db.all(
        f"SELECT {', '.join('p.' + c for c in _PEOPLE.split(', '))}, "
        "(SELECT COUNT(*) FROM gateway_sessions s WHERE s.person_id = p.id AND s.revoked_at IS NULL) AS open_sessions "
        "FROM people p ORDER BY p.created_at, p.rowid"
    )
    return [{**_person(row), "open_sessions": row["open_sessions"]} for row in rows]


# --- device grants --------------------------------------------------------------------


async def create_grant(db: Database, device_hash: str, user_code_hash: str, expires_at: float, interval: int) -> None:
    await db.run(
        "INSERT INTO device_grants (device_hash, user_code_hash, expires_at, interval_seconds) VALUES (?, ?, ?, ?)",
        (device_hash, user_code_hash, expires_at, interval),
    )


async def grant(db: Database, device_hash: str) -> Row | None:
    rows = await db.all("SELECT * FROM device_grants WHERE device_hash = ?", (device_hash,))
    return rows[0] if rows else None


async def pending_grant_for_user_code(db: Database, user_code_hash: str, now: float) -> Row | None:
    rows = await db.all(
        "SELECT device_hash FROM device_grants WHERE user_code_hash = ? AND status = 'pending' AND expires_at > ?",
        (user_code_hash, now),
    )
    return rows[0] if rows else None


async def note_poll(db: Database, device_hash: str, now: float, interval: int) -> None:
    await db.run(
        "UPDATE device_grants SET polled_at = ?, interval_seconds = ? WHERE device_hash = ?",
        (now, interval, device_hash),
    )


async def settle_grant(db: Database, device_hash: str, person_id: str | None, idp_refresh: str | None) -> bool:
    """Approve (with a person) or deny (None) a pending grant; False when it is no longer pending."""
    rows = await db.all(
        "UPDATE device_grants SET status = ?, person_id = ?, idp_refresh = ? "
        "WHERE device_hash = ? AND status = 'pending' RETURNING device_hash",
        ("approved" if person_id else "denied", person_id, idp_refresh, device_hash),
    )
    return bool(rows)


async def take_grant(db: Database, device_hash: str, status: str) -> Row | None:
    """Remove a grant in `status` and return it (None when another request took it first)."""
    rows = await db.all(
        "DELETE FROM device_grants WHERE device_hash = ? AND status = ? RETURNING *", (device_hash, status)
    )
    return rows[0] if rows else None


async def forget_expired(db: Database, now: float) -> None:
    """Drop device grants and trips past their expiry (run as a device code is issued)."""
    await db.run("DELETE FROM device_grants WHERE expires_at <= ?", (now,))
    await db.run("DELETE FROM signin_trips WHERE expires_at <= ?", (now,))


# --- trips to the IdP -----------------------------------------------------------------


async def create_trip(db: Database, state_hash: str, device_hash: str, browser_hash: str, expires_at: float) -> None:
    await db.run(
        "INSERT INTO signin_trips (state_hash, device_hash, browser_hash, expires_at) VALUES (?, ?, ?, ?)",
        (state_hash, device_hash, browser_hash, expires_at),
    )


async def take_trip(db: Database, state_hash: str) -> Row | None:
    rows = await db.all("DELETE FROM signin_trips WHERE state_hash = ? RETURNING *", (state_hash,))
    return rows[0] if rows else None


# --- sessions -------------------------------------------------------------------------


async def create_session(
    db: Database, person_id: str, refresh_hash: str, idp_refresh: str | None, now: float, expires_at: float
) -> str:
    session_id = "s_" + secrets.token_hex(8)
    await db.run(
        "INSERT INTO gateway_sessions (id, person_id, refresh_hash, idp_refresh, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, person_id, refresh_hash, idp_refresh, iso(now), expires_at),
    )
    return session_id


async def session_by_refresh(db: Database, refresh_hash: str) -> Row | None:
    """The session this refresh token opens, with its person's email, name and groups."""
    rows = await db.all(
        "SELECT s.id, s.person_id, s.idp_refresh, s.expires_at, s.revoked_at, p.email, p.name, p.groups, p.subject "
        "FROM gateway_sessions s JOIN people p ON p.id = s.person_id WHERE s.refresh_hash = ?",
        (refresh_hash,),
    )
    if not rows:
        return None
    return {**rows[0], "groups": json.loads(rows[0]["groups"] or "[]")}


async def session_replaced_by(db: Database, refresh_hash: str) -> str | None:
    """The session whose previous refresh token this is (one already rotated away), or None."""
    rows = await db.all("SELECT id FROM gateway_sessions WHERE previous_refresh_hash = ?", (refresh_hash,))
    return rows[0]["id"] if rows else None


async def rotate(
    db: Database, session_id: str, old_hash: str, new_hash: str, idp_refresh: str | None, now: float
) -> bool:
    """Replace the session's refresh token; False when the old one was already replaced."""
    rows = await db.all(
        "UPDATE gateway_sessions SET refresh_hash = ?, previous_refresh_hash = refresh_hash, idp_refresh = ?, "
        "refreshed_at = ? WHERE id = ? AND refresh_hash = ? AND revoked_at IS NULL RETURNING id",
        (new_hash, idp_refresh, iso(now), session_id, old_hash),
    )
    return bool(rows)


async def update_person(db: Database, person_id: str, identity: Identity, now: float) -> None:
    await db.run(
        "UPDATE people SET email = ?, name = ?, groups = ?, seen_at = ? WHERE id = ?",
        (identity.email, identity.name, json.dumps(list(identity.groups)), iso(now), person_id),
    )


async def session_state(db: Database, session_id: str) -> Row | None:
    rows = await db.all("SELECT revoked_at, expires_at FROM gateway_sessions WHERE id = ?", (session_id,))
    return rows[0] if rows else None


async def revoke_session(
    db: Database, now: float, session_id: str | None = None, refresh_hash: str | None = None
) -> Any:
    """Revoke one session, named by its id or its refresh token's hash."""
    column, value = ("id", session_id) if session_id is not None else ("refresh_hash", refresh_hash)
    await db.run(
        f"UPDATE gateway_sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE {column} = ?", (iso(now), value)
    )


async def revoke_person(db: Database, person_id: str, now: float) -> list[str]:
    """Revoke every open session of a person; the ids of those revoked."""
    rows = await db.all(
        "UPDATE gateway_sessions SET revoked_at = ? WHERE person_id = ? AND revoked_at IS NULL RETURNING id",
        (iso(now), person_id),
    )
    return [row["id"] for row in rows]
