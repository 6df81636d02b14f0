"""Times as relay keeps them: epoch seconds (float) in code, ISO 8601 UTC text
("2026-11-25T06:30:00Z") in D1 rows, the admin API and query strings."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO 8601 date or time; without an offset it is taken as UTC.
    Raises ValueError when `text` is not ISO 8601 (OverflowError or OSError for a year
    out of range)."""
    when = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
