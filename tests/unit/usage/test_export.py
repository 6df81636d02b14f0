"""The usage export on SQLite with buckets in memory: files per hour that hold the rows
row for row, a cursor that moves only past what R2 took, and no row lost or sent twice
while R2 refuses."""

from __future__ import annotations

import asyncio
import json

from relay import times
from relay.services import Services
from relay.usage import audit_log, export, retention, scheduled
from tests.fakes.platform import SqliteDatabase
from tests.unit.usage.test_reports import row

NOW = times.parse_time("2027-04-01T00:00:00Z")


class MemoryBucket:
    """An R2 bucket in memory; refuses its next `refuse` puts."""

    def __init__(self, refuse: int = 0) -> None:
        self.objects: dict[str, str] = {}
        self.refuse = refuse

    async def put(self, key: str, body: str) -> None:
        await asyncio.sleep(0)
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("R2 unavailable")
        self.objects[key] = body


def _log(times: list[str]) -> SqliteDatabase:
    db = SqliteDatabase()
    for start in range(0, len(times), 100):
        asyncio.run(
            audit_log.insert_usage(
                db, *(row(t, session_id=f"s-{n}") for n, t in enumerate(times[start : start + 100], start))
            )
        )
    return db


def _exported(bucket: MemoryBucket) -> list[dict]:
    return [json.loads(line) for key in sorted(bucket.objects) for line in bucket.objects[key].splitlines()]


def _rows(db) -> list[dict]:
    found = asyncio.run(db.all(f"SELECT {', '.join(export.FIELDS)} FROM usage ORDER BY id"))
    for made in found:
        made["cost_usd"], made["cache_savings_usd"] = made["cost_nanos"] / 1e9, made["cache_savings_nanos"] / 1e9
    return found


TIMES = [times.iso(NOW - 4 * 3600 + n * 37) for n in range(300)]  # four hours of 2027-03-31


def test_rows_go_out_as_one_file_per_hour_row_for_row(monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 120)
    db = _log(TIMES)
    bucket = MemoryBucket()
    done = asyncio.run(export.run(db, bucket, NOW))
    assert (done.rows, done.through_id, done.failure) == (300, 300, None)
    assert _exported(bucket) == sorted(_rows(db), key=lambda r: (r["created_at"][:13], r["id"]))
    assert all(key.startswith("usage/v1/day=2027-03-31/hour=") and key.endswith(".ndjson") for key in bucket.objects)
    first = json.loads(bucket.objects[min(bucket.objects)].splitlines()[0])
    assert list(first) == list(export.FIELDS) and first["cost_usd"] == 0.0006
    # Nothing new: nothing written again.
    assert asyncio.run(export.run(db, bucket, NOW)).rows == 0


def test_while_r2_refuses_the_cursor_stays_and_nothing_is_lost_or_doubled(monkeypatch):
    monkeypatch.setattr(export, "CHUNK_ROWS", 120)
    db = _log(TIMES)
    bucket = MemoryBucket(refuse=export.PUT_ATTEMPTS * 2 + 1)  # two runs fail, then a file of the third
    for _ in range(2):
        done = asyncio.run(export.run(db, bucket, NOW))
        assert done.failure == "ConnectionError: R2 unavailable" and done.rows == 0
    state = asyncio.run(export.status(db, True))
    assert (state["failures"], state["through_id"], state["pending_rows"]) == (2, 0, 300)
    done = asyncio.run(export.run(db, bucket, NOW))  # one put fails, its retry passes
    assert done.rows == 300 and done.failure is None
    exported = _exported(bucket)
    assert sorted(r["id"] for r in exported) == list(range(1, 301))  # each row once
    state = asyncio.run(export.status(db, True))
    assert (state["rows"], state["pending_rows"], state["last_error"]) == (300, 0, "ConnectionError: R2 unavailable")


def test_a_chunk_written_again_overwrites_its_files_with_the_same_rows(monkeypatch):
    """R2 took some of a chunk's files, then refused: the retry names them the same."""
    monkeypatch.setattr(export, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(export, "PUT_ATTEMPTS", 1)
    db = _log(TIMES)
    bucket = MemoryBucket()
    real_put = bucket.put
    calls = []

    async def second_put_fails(key, body):
        calls.append(key)
        if len(calls) == 2:
            raise ConnectionError("R2 unavailable")
        await real_put(key, body)

    bucket.put = second_put_fails
    assert asyncio.run(export.run(db, bucket, NOW)).failure
    bucket.put = real_put
    assert asyncio.run(export.run(db, bucket, NOW)).rows == 300
    assert sorted(r["id"] for r in _exported(bucket)) == list(range(1, 301))


def test_retention_keeps_the_rows_the_export_has_not_sent(monkeypatch):
    old = [times.iso(NOW - 100 * 86400 + n) for n in range(50)]
    db = _log(old)
    services = Services(transport=None, db=db, exports=MemoryBucket(refuse=10**6))
    asyncio.run(scheduled.run({}, services, NOW))
    assert len(_rows(db)) == 50  # R2 refused: nothing went out, nothing is deleted
    services.exports = MemoryBucket()
    asyncio.run(scheduled.run({}, services, NOW))
    assert len(_rows(db)) == 0 and len(_exported(services.exports)) == 50
    assert asyncio.run(retention.prune(db, NOW)) == 0
