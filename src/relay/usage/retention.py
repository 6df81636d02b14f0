"""Retention: audit rows older than RELAY_RETENTION_DAYS are deleted, a bounded batch at a
time, by the Worker's Cron Trigger (scheduled.py). Rollups (rollups.py) are kept: reports
over old ranges still answer from them, and D1's size stays bounded by the days kept.

A batch is one D1 call (the delete and its count, in one batch) of at most BATCH_ROWS rows,
the oldest first (by the created_at index, so finding them reads no more than it deletes);
a run makes at most MAX_BATCHES of them, so no run holds D1 long, and what one run leaves
the next one takes.
"""

from __future__ import annotations

from relay import times
from relay.services import Database

DEFAULT_DAYS = 90
BATCH_ROWS = 5000
MAX_BATCHES = 40
MAX_ID = 2**63 - 1  # SQLite's largest integer

_DELETE = (
    "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE created_at < ? AND id <= ? ORDER BY created_at LIMIT ?)"
)


def cutoff(now: float, days: int) -> float:
    """The moment before which audit rows are deleted."""
    return now - days * 86400


async def prune(db: Database, before: float, max_batches: int = MAX_BATCHES, through_id: int | None = None) -> int:
    """Delete audit rows created before `before` (epoch seconds), oldest first, in batches;
    the number deleted. `through_id`: none after this row (those the export has not sent)."""
    deleted = 0
    last = MAX_ID if through_id is None else through_id
    for _ in range(max_batches):
        _, [counted] = await db.batch([(_DELETE, (times.iso(before), last, BATCH_ROWS)), ("SELECT changes() AS n", ())])
        deleted += int(counted["n"])
        if counted["n"] < BATCH_ROWS:
            break
    return deleted
