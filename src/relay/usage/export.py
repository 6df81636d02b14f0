"""Export of the audit log to the team's warehouse: every row, as newline-delimited JSON
files in R2 (the USAGE_EXPORT binding), written by the Cron Trigger (scheduled.py), never
on a request's path.

The D1 log is the buffer: a cursor (usage_export.through_id, migrations/0008) says how far
rows have gone out. A run reads the rows after it in id order, CHUNK_ROWS at a time, writes
each chunk's rows as one file per UTC hour of their created_at, and only then moves the
cursor past the chunk. A file's name is fixed by its rows (the hour, and the id of its
first row), so a chunk written again after a failure overwrites its files with the same
rows (or more of them): nothing is lost and no row goes out twice. While R2 refuses, the
cursor stays, failures are counted (shown in /admin/status) and the next run tries again;
retention (retention.py) deletes no row the export has not passed.

Layout, readable as a Hive-partitioned table (DuckDB read_json with hive_partitioning,
ClickHouse s3(), BigQuery external tables with hive partitioning):

    usage/v1/day=YYYY-MM-DD/hour=HH/<id of the first row, 12 digits>.ndjson

Each line is one audit row: "id", then audit_log.COLUMNS, values as D1 holds them (README
"Usage export" lists them with their types); cost_usd and cache_savings_usd are the exact
nano-dollar columns in dollars.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relay import times
from relay.http.text_bounds import clip
from relay.services import Database, ObjectStore
from relay.usage import audit_log, pricing

PREFIX = "usage/v1"
CHUNK_ROWS = 2000
MAX_CHUNKS = 25  # per run: 50,000 rows, a run every 15 minutes (wrangler.toml)
PUT_ATTEMPTS = 3  # per file and run, before the run stops and leaves it to the next
FIELDS = ("id", *audit_log.COLUMNS)


@dataclass
class Outcome:
    rows: int = 0
    files: int = 0
    through_id: int = 0
    failure: str | None = None


def object_key(hour: str, first_id: int) -> str:
    """The file for rows of UTC hour "YYYY-MM-DDTHH" from row `first_id` on."""
    return f"{PREFIX}/day={hour[:10]}/hour={hour[11:13]}/{first_id:012d}.ndjson"


def lines(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as NDJSON, each object's fields in FIELDS order, money exact."""
    out = []
    for row in rows:
        shown = {name: row.get(name) for name in FIELDS}
        shown["cost_usd"], shown["cache_savings_usd"] = (
            pricing.usd(row["cost_nanos"]),
            pricing.usd(row["cache_savings_nanos"]),
        )
        out.append(json.dumps(shown, ensure_ascii=False, separators=(",", ":")))
    return "\n".join(out) + "\n"


def files(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """A chunk's rows (in id order) by the file they go to."""
    by_hour: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_hour.setdefault(row["created_at"][:13], []).append(row)
    return {object_key(hour, group[0]["id"]): group for hour, group in by_hour.items()}


async def cursor(db: Database) -> int:
    [state] = await db.all("SELECT through_id FROM usage_export")
    return int(state["through_id"])


async def _put(bucket: ObjectStore, key: str, body: str) -> Exception | None:
    failure: Exception | None = None
    for _ in range(PUT_ATTEMPTS):
        try:
            await bucket.put(key, body)
            return None
        except Exception as exc:
            failure = exc
    return failure


async def run(db: Database, bucket: ObjectStore, now: float, max_chunks: int = MAX_CHUNKS) -> Outcome:
    """Export the rows after the cursor, at most `max_chunks` chunks of them."""
    outcome = Outcome(through_id=await cursor(db))
    columns = ", ".join(FIELDS)
    for _ in range(max_chunks):
        rows = await db.all(
            f"SELECT {columns} FROM usage WHERE id > ? ORDER BY id LIMIT ?", (outcome.through_id, CHUNK_ROWS)
        )
        if not rows:
            break
        chunk = files(rows)
        for key, group in chunk.items():
            failure = await _put(bucket, key, lines(group))
            if failure is not None:
                outcome.failure = f"{type(failure).__name__}: {clip(str(failure), 200)}"
                await db.run(
                    "UPDATE usage_export SET failures = failures + 1, last_failure_at = ?, last_error = ?",
                    (times.iso(now), outcome.failure),
                )
                return outcome
        outcome.through_id = int(rows[-1]["id"])
        outcome.rows += len(rows)
        outcome.files += len(chunk)
        await db.run(
            "UPDATE usage_export SET through_id = ?, rows = rows + ?, files = files + ?, last_success_at = ?",
            (outcome.through_id, len(rows), len(chunk), times.iso(now)),
        )
        if len(rows) < CHUNK_ROWS:
            break
    return outcome


async def status(db: Database, bound: bool) -> dict[str, Any]:
    """The export's counters for /admin/status: how far it has gone, what is left, failures."""
    [state] = await db.all(
        "SELECT through_id, rows, files, failures, last_success_at, last_failure_at, last_error, "
        "(SELECT COUNT(*) FROM usage WHERE id > usage_export.through_id) AS pending_rows FROM usage_export"
    )
    return {"bucket_bound": bound, **state}
