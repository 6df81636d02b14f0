"""Retention's batched delete, and the scheduled run that calls it, on SQLite."""

from __future__ import annotations

import asyncio

from relay import times
from relay.services import Services
from relay.usage import audit_log, retention, rollups, scheduled
from tests.fakes.platform import CountingDatabase
from tests.unit.usage.test_reports import row

NOW = times.parse_time("2027-04-01T00:00:00Z")


def _log(old: int, recent: int) -> CountingDatabase:
    db = CountingDatabase()
    rows = [row(times.iso(NOW - 100 * 86400 + n)) for n in range(old)]
    rows += [row(times.iso(NOW - 10 * 86400 + n)) for n in range(recent)]
    for start in range(0, len(rows), 100):
        asyncio.run(audit_log.insert_usage(db, *rows[start : start + 100]))
    db.statements.clear()
    return db


def _count(db, table: str) -> int:
    """Audit rows in `usage`; the requests a rollup table counts."""
    what = "COUNT(*)" if table == "usage" else "SUM(requests)"
    return asyncio.run(db.all(f"SELECT {what} AS n FROM {table}"))[0]["n"]


def test_rows_past_the_cutoff_go_in_batches_of_bounded_size(monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 40)
    db = _log(old=100, recent=30)
    deleted = asyncio.run(retention.prune(db, retention.cutoff(NOW, 90)))
    assert deleted == 100 and _count(db, "usage") == 30
    assert sum("DELETE" in sql for sql in db.statements) == 3  # 40 + 40 + 20
    assert all(_count(db, table.name) == 130 for table in rollups.TABLES)  # rollups kept


def test_a_run_stops_after_its_batches_and_the_next_takes_the_rest(monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 10)
    db = _log(old=35, recent=0)
    assert asyncio.run(retention.prune(db, retention.cutoff(NOW, 90), max_batches=2)) == 20
    assert asyncio.run(retention.prune(db, retention.cutoff(NOW, 90), max_batches=2)) == 15
    assert _count(db, "usage") == 0


def test_the_scheduled_run_keeps_the_configured_days(capsys):
    db = _log(old=5, recent=5)
    services = Services(transport=None, db=db)
    asyncio.run(scheduled.run({"RELAY_RETENTION_DAYS": "20"}, services, NOW))
    assert _count(db, "usage") == 5
    assert "retention deleted 5 audit rows older than 20 days" in capsys.readouterr().out


def test_a_misconfigured_or_unbound_worker_logs_and_does_nothing(capsys):
    asyncio.run(scheduled.run({"RELAY_RETENTION_DAYS": "0"}, Services(transport=None, db=CountingDatabase()), NOW))
    assert "RELAY_RETENTION_DAYS must be at least 1" in capsys.readouterr().out
    asyncio.run(scheduled.run({}, Services(transport=None, db=None), NOW))
    assert "no D1 database bound" in capsys.readouterr().out
