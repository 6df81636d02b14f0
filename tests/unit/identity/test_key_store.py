"""The relay-key store against SQLite with the project's migrations (the engine D1 runs)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re

import pytest

from relay.identity import key_store
from tests.fakes.platform import SqliteDatabase

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PUBLIC_FIELDS = [
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
]


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def db():
    return SqliteDatabase()


def assert_hidden(secret, *texts):
    """Fails without printing the secret (pytest would show the operands of `in`)."""
    leaked = any(secret in text for text in texts)
    assert not leaked, "key material in output"


def test_a_created_key_is_shown_once_and_stored_only_as_its_hash(db):
    record, key = run(key_store.create_key(db, name="alice", now=NOW))

    shaped = re.fullmatch(r"rk-[A-Za-z0-9_-]{40}", key) is not None
    assert shaped
    rows = run(db.all("SELECT * FROM relay_keys"))
    assert rows[0]["key_hash"] == key_store.key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert_hidden(key, json.dumps(rows), json.dumps(record))


def test_records_have_every_public_field_and_never_the_hash(db):
    record, key = run(
        key_store.create_key(
            db,
            name="alice",
            now=NOW,
            billing_tag="team-a",
            allowed_models=["claude-haiku-*", "gpt-4o*"],
            rpm_limit=60,
            max_concurrent_streams=4,
            monthly_budget_usd=25,
            cache_policy="system-1h",
            expires_at=NOW + 86_400,
        )
    )

    assert list(record) == PUBLIC_FIELDS
    assert re.fullmatch(r"rk_[0-9a-f]{8}", record["id"])
    assert record == {
        "id": record["id"],
        "name": "alice",
        "billing_tag": "team-a",
        "allowed_models": ["claude-haiku-*", "gpt-4o*"],
        "rpm_limit": 60,
        "max_concurrent_streams": 4,
        "monthly_budget_usd": 25.0,
        "cache_policy": "system-1h",
        "created_at": "2027-01-15T08:00:00Z",
        "expires_at": "2027-01-16T08:00:00Z",
        "revoked_at": None,
    }
    for found in (
        run(key_store.get_key(db, record["id"])),
        run(key_store.find_by_hash(db, key_store.key_hash(key))),
        run(key_store.list_keys(db))[0],
    ):
        assert found == record
        assert "key_hash" not in found


def test_defaults_are_nulls_and_an_empty_model_list(db):
    record, _ = run(key_store.create_key(db, name="bob", now=NOW))
    assert record["allowed_models"] == []
    assert [
        record[name]
        for name in (
            "billing_tag",
            "rpm_limit",
            "max_concurrent_streams",
            "monthly_budget_usd",
            "cache_policy",
            "expires_at",
            "revoked_at",
        )
    ] == [None] * 7


def test_ids_and_keys_are_random_and_unrelated(db):
    made = [run(key_store.create_key(db, name=f"k{n}", now=NOW)) for n in range(20)]
    ids = {record["id"] for record, _ in made}
    keys = {key for _, key in made}
    assert len(ids) == len(keys) == 20
    for record, key in made:
        assert_hidden(record["id"][3:], key)


def test_unknown_ids_and_hashes_find_nothing(db):
    run(key_store.create_key(db, name="alice", now=NOW))
    assert run(key_store.get_key(db, "rk_00000000")) is None
    assert run(key_store.find_by_hash(db, key_store.key_hash("rk-not-a-key"))) is None
    assert run(key_store.revoke_key(db, "rk_00000000", NOW)) is None


def test_list_is_in_creation_order(db):
    names = ["first", "second", "third"]
    for name in names:
        run(key_store.create_key(db, name=name, now=NOW))  # same second: rowid breaks the tie
    run(key_store.create_key(db, name="earlier", now=NOW - 60))
    assert [record["name"] for record in run(key_store.list_keys(db))] == ["earlier", *names]


def test_revoking_twice_keeps_the_first_time(db):
    record, key = run(key_store.create_key(db, name="alice", now=NOW))

    first = run(key_store.revoke_key(db, record["id"], NOW + 10))
    again = run(key_store.revoke_key(db, record["id"], NOW + 99))

    assert first["revoked_at"] == again["revoked_at"] == "2027-01-15T08:00:10Z"
    assert run(key_store.find_by_hash(db, key_store.key_hash(key)))["revoked_at"] == "2027-01-15T08:00:10Z"


def test_an_id_collision_is_retried_with_a_fresh_id(db, monkeypatch):
    taken, _ = run(key_store.create_key(db, name="first", now=NOW))
    fresh = iter([taken["id"], "rk_0000beef"])
    monkeypatch.setattr(key_store, "new_id", lambda: next(fresh))

    record, _ = run(key_store.create_key(db, name="second", now=NOW))
    assert record["id"] == "rk_0000beef" and record["name"] == "second"
