"""Rollups equal the audit rows they sum, to the nano-dollar, on random data; reports read
from them give what the rows give."""

from __future__ import annotations

import asyncio
import random
import sqlite3

import pytest

from relay import times
from relay.usage import audit_log, reports, rollups
from tests.fakes.platform import MIGRATIONS, SqliteDatabase

START = times.parse_time("2027-01-01T00:00:00Z")
DAYS = 4


def run(coroutine):
    return asyncio.run(coroutine)


def random_row(rng: random.Random) -> dict:
    created_at = times.iso(START + rng.randrange(DAYS * 86400))
    refused = rng.random() < 0.1
    priced = not refused and rng.random() < 0.9
    counts = {
        name: None if refused else rng.choice([None, 0, rng.randrange(1, 200_000)])
        for name in ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens")
    }
    cost = rng.randrange(0, 5 * 10**9) if priced and any(v is not None for v in counts.values()) else None
    return {
        "created_at": created_at,
        "day": created_at[:10],
        "key_id": rng.choice(["rk_0000000a", "rk_0000000b", "static-x", None]),
        "billing_tag": rng.choice(["team-a", "team-b", "", "naïve ☃", None]),
        "session_id": rng.choice([f"s-{n}" for n in range(12)] + [None]),
        "client": rng.choice(["claude-cli", "Anthropic/Python", None]),
        "surface": "anthropic",
        "provider": rng.choice(["anthropic", "openai", None]),
        "method": "POST",
        "path": "/v1/messages",
        "model_requested": rng.choice(["claude-opus-5-5", "claude-sonnet-5-5", "", None]),
        "model_served": rng.choice(["claude-opus-5-5-20261101", None]),
        "stream": 1,
        "cache_markers_added": 0,
        "status": 401 if refused else rng.choice([200, 200, 200, 529]),
        "error_type": rng.choice([None, None, "client_disconnected"]),
        **counts,
        "cost_nanos": cost,
        "cache_savings_nanos": None if cost is None else rng.randrange(-(10**6), 10**8),
    }


@pytest.fixture(scope="module")
def log():
    rng = random.Random(19)
    db = SqliteDatabase()
    rows = [random_row(rng) for _ in range(3000)]
    written = 0
    while written < len(rows):  # groups of any size, as the meter writes them
        size = rng.randrange(1, 101)
        run(audit_log.insert_usage(db, *rows[written : written + size]))
        written += size
    return db


def rows_of(db, sql, params=()):
    return run(db.all(sql, params))


@pytest.mark.parametrize("table", rollups.TABLES, ids=lambda table: table.name)
def test_each_rollup_row_is_the_sum_of_its_audit_rows(log, table):
    expressions = ", ".join(rollups.ROW_DIMENSIONS[name] for name in table.dims)
    keys = f"substr(created_at, 1, {table.width}), json_array({expressions})"
    sums = ", ".join(f"{sql} AS {name}" for name, sql in rollups.MEASURES.items())
    from_rows = rows_of(log, f"SELECT {keys}, {sums} FROM usage GROUP BY {keys}")
    stored = rows_of(log, f"SELECT period, dims, {', '.join(rollups.MEASURES)} FROM {table.name}")
    assert sorted(map(list, map(dict.values, from_rows))) == sorted(map(list, map(dict.values, stored)))
    assert sum(r["requests"] for r in stored) == 3000


def raw_report(db, query: reports.ReportQuery) -> dict:
    """The report as the audit rows alone give it (how reports were made before rollups)."""
    dims = [f"{reports.DIMENSIONS[name]} AS d{n}" for n, name in enumerate(query.group_by)]
    keys = ", ".join(f"d{n}" for n in range(len(dims)))
    sums = ", ".join(f"{sql} AS {name}" for name, sql in rollups.MEASURES.items())
    where, params = "created_at >= ? AND created_at < ?", [times.iso(query.start), times.iso(query.end)]
    for column, value in (("key_id", query.key), ("billing_tag", query.tag)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    groups = rows_of(db, f"SELECT {', '.join(dims)}, {sums} FROM usage WHERE {where} GROUP BY {keys}", params)
    [total] = rows_of(db, f"SELECT {sums} FROM usage WHERE {where}", params)
    return {"groups": groups, "total": total}


def as_nanos(sums: dict) -> dict:
    shown = {"cost_usd": "cost_nanos", "cache_savings_usd": "cache_savings_nanos"}
    return {
        shown.get(name, name): round(value * 10**9) if name in shown else value
        for name, value in sums.items()
        if name in reports.MEASURES
    }


@pytest.mark.parametrize(
    "query",
    [
        "group_by=tag&from=2027-01-01&to=2027-01-05",  # whole hours only
        "group_by=day,model&from=2027-01-01T00:17:03Z&to=2027-01-04T21:59:59Z",  # ragged ends
        "group_by=session&from=2027-01-02T05:30:00Z&to=2027-01-03T05:29:00Z",
        "group_by=key,provider&from=2027-01-02T10:10:00Z&to=2027-01-02T10:50:00Z",  # inside one hour
        "group_by=client&tag=team-b&from=2027-01-01T12:00:01Z&to=2027-01-03",
        "group_by=session,tag&key=rk_0000000a&from=2027-01-01T23:00:00Z&to=2027-01-04T00:00:01Z",
        "group_by=day&from=2027-01-02&to=2027-01-03T23:00:00Z",  # a day, then hours
        "group_by=session,model&from=2027-01-02T05:30:00Z&to=2027-01-03T05:29:00Z",  # no rollup: the rows
        "group_by=provider&from=2026-12-31T23:59:00Z&to=2027-01-05T00:00:01Z",  # days, hours and seconds
    ],
)
def test_reports_from_rollups_equal_reports_from_the_rows_to_the_nano_dollar(log, query):
    asked = reports.parse_report_query(query, START + DAYS * 86400)
    made = run(reports.usage_report(log, asked))
    expected = raw_report(log, asked)
    assert as_nanos(made["total"]) == expected["total"]
    assert made["total"]["requests"] > 0
    names = asked.group_by
    got = {tuple(g[name] for name in names): as_nanos(g) for g in made["groups"]}
    want = {
        tuple(g[f"d{n}"] for n in range(len(names))): {k: v for k, v in g.items() if not k.startswith("d")}
        for g in expected["groups"]
    }
    assert got == want


def test_a_range_is_read_as_whole_days_then_whole_hours_then_seconds():
    start, end = times.parse_time("2027-01-01T22:30:05Z"), times.parse_time("2027-01-31T01:00:07Z")
    pieces = reports._plan(start, end, rollups.tiers([]))
    shown = [(table.name if table else "usage", times.iso(a), times.iso(b)) for table, a, b in pieces]
    assert shown == [
        ("usage", "2027-01-01T22:30:05Z", "2027-01-01T23:00:00Z"),
        ("usage_hourly", "2027-01-01T23:00:00Z", "2027-01-02T00:00:00Z"),
        ("usage_daily", "2027-01-02T00:00:00Z", "2027-01-31T00:00:00Z"),
        ("usage_hourly", "2027-01-31T00:00:00Z", "2027-01-31T01:00:00Z"),
        ("usage", "2027-01-31T01:00:00Z", "2027-01-31T01:00:07Z"),
    ]
    assert [table.name for table, _, _ in reports._plan(start, end, rollups.tiers(["session_id"])) if table] == [
        "usage_session_hourly",
        "usage_session_daily",
        "usage_session_hourly",
    ]


def test_the_migration_sums_rows_logged_before_it_as_the_live_writes_do(log):
    """A deployment with rows already logged gets rollups equal to those of rows written since."""
    older = sqlite3.connect(":memory:")
    older.row_factory = sqlite3.Row
    migrations = sorted(MIGRATIONS.glob("*.sql"))
    rollups_migration = next(m for m in migrations if m.name.startswith("0007"))
    for migration in migrations[: migrations.index(rollups_migration)]:
        older.executescript(migration.read_text())
    existing = {row["name"] for row in older.execute("PRAGMA table_info(usage)")}
    columns = ", ".join(name for name in audit_log.COLUMNS if name in existing)  # a later migration adds the rest
    for made in rows_of(log, f"SELECT {columns} FROM usage ORDER BY id"):
        older.execute(f"INSERT INTO usage ({columns}) VALUES ({', '.join('?' * len(made))})", tuple(made.values()))
    older.executescript(rollups_migration.read_text())
    for table in rollups.TABLES:
        query = f"SELECT * FROM {table.name} ORDER BY period, dims"
        assert [dict(r) for r in older.execute(query)] == rows_of(log, query), table.name
