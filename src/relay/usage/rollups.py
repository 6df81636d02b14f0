"""Usage rollups (migrations/0007_usage_rollups.sql): the audit log summed per UTC day and
per UTC hour, so reports read thousands of rollup rows instead of millions of audit rows.

Four tables, with the same measures:
- usage_daily, usage_hourly: key x tag x model x provider x client, per day and per hour
- usage_session_daily, usage_session_hourly: key x tag x client x session, for reports by
  session (without model and provider, which would multiply their rows: a report by session
  and model or provider is read from the audit rows)

A report reads its range's whole days from a daily table, the whole hours left at either
end from the hourly one, and the seconds left from the audit rows (reports.py). A group of
audit rows and the rollup rows it adds to are written in one D1 batch (one transaction,
audit_log.insert_usage), so a rollup is always exactly the sum of the rows written, to the
nano-dollar; deleting old audit rows (retention) leaves rollups as they are. A rollup row's
identity is its period and `dims`, the JSON array of its dimension values (json_array in
SQL, which tells NULL from any text), so NULL dimensions group like any other.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DIMENSIONS = ("key_id", "billing_tag", "model", "provider", "client")
SESSION_DIMENSIONS = ("key_id", "billing_tag", "client", "session_id")
DAY, HOUR = 86400, 3600


@dataclass(frozen=True)
class Table:
    name: str
    dims: tuple[str, ...]
    seconds: int  # the length of its periods: DAY or HOUR

    @property
    def width(self) -> int:
        """Characters of created_at that name a period: "2026-11-25" or "2026-11-25T06"."""
        return 10 if self.seconds == DAY else 13


DAILY = Table("usage_daily", DIMENSIONS, DAY)
HOURLY = Table("usage_hourly", DIMENSIONS, HOUR)
SESSIONS_DAILY = Table("usage_session_daily", SESSION_DIMENSIONS, DAY)
SESSIONS_HOURLY = Table("usage_session_hourly", SESSION_DIMENSIONS, HOUR)
TABLES = (DAILY, HOURLY, SESSIONS_DAILY, SESSIONS_HOURLY)


def tiers(columns: Sequence[str]) -> tuple[Table, ...]:
    """The tables that hold these dimension columns, longest periods first; () when no
    rollup holds them all (the report reads the audit rows)."""
    for family in ((DAILY, HOURLY), (SESSIONS_DAILY, SESSIONS_HOURLY)):
        if set(columns) <= set(family[0].dims):
            return family
    return ()


# What a rollup row sums, and the audit row expression each sum is of (for SQL over the
# audit log; `_measures` computes the same in Python, in this order, for the rows being written).
MEASURES = {
    "requests": "COUNT(*)",
    "errors": "COALESCE(SUM(status >= 400 OR error_type IS NOT NULL), 0)",
    "input_tokens": "COALESCE(SUM(input_tokens), 0)",
    "output_tokens": "COALESCE(SUM(output_tokens), 0)",
    "cache_creation_tokens": "COALESCE(SUM(cache_creation_tokens), 0)",
    "cache_read_tokens": "COALESCE(SUM(cache_read_tokens), 0)",
    "cost_nanos": "COALESCE(SUM(cost_nanos), 0)",
    "unpriced_requests": "COALESCE(SUM(cost_nanos IS NULL AND COALESCE(input_tokens, output_tokens, "
    "cache_creation_tokens, cache_read_tokens) IS NOT NULL), 0)",
    "cache_savings_nanos": "COALESCE(SUM(cache_savings_nanos), 0)",
}
_COUNTED = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens")
# An audit row's dimension values as a rollup holds them.
ROW_DIMENSIONS = {
    "key_id": "key_id",
    "billing_tag": "billing_tag",
    "model": "COALESCE(model_served, model_requested)",
    "provider": "provider",
    "client": "client",
    "session_id": "session_id",
}


# Every dimension a table has, in this order: a row's values of them as `_dimensions` gives
# them, and where each table's dimensions are among them.
_ALL_DIMENSIONS = (*DIMENSIONS, "session_id")
_POSITIONS = {table: tuple(_ALL_DIMENSIONS.index(name) for name in table.dims) for table in TABLES}


def _dimensions(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The row's values of _ALL_DIMENSIONS."""
    model = row.get("model_served")
    return (
        row.get("key_id"),
        row.get("billing_tag"),
        model if model is not None else row.get("model_requested"),
        row.get("provider"),
        row.get("client"),
        row.get("session_id"),
    )


def _measures(row: Mapping[str, Any]) -> list[int]:
    """The row's measures, in MEASURES' order."""
    status = row.get("status") or 0
    counted = [row.get(name) for name in _COUNTED]
    return [
        1,
        int(status >= 400 or row.get("error_type") is not None),
        *(count or 0 for count in counted),
        row.get("cost_nanos") or 0,
        int(row.get("cost_nanos") is None and any(count is not None for count in counted)),
        row.get("cache_savings_nanos") or 0,
    ]


# Rows summed by hour and every dimension: {(hour, *dimension values): measures}.
_Sums = dict[tuple[Any, ...], list[int]]


def _sum_by(grouped: Iterable[tuple[tuple[Any, ...], list[int]]]) -> _Sums:
    """The measures of each (group, measures) summed by group, in the order groups first come."""
    sums: _Sums = {}
    for group, measures in grouped:
        into = sums.get(group)
        sums[group] = measures if into is None else list(map(operator.add, into, measures))
    return sums


def _summed(rows: Sequence[Mapping[str, Any]]) -> _Sums:
    """`rows` summed once by hour and all their dimensions, so that each table sums these
    few sums rather than every row again (a group of rows is mostly one or two of them)."""
    return _sum_by(((row["created_at"][:13], *_dimensions(row)), _measures(row)) for row in rows)


def _deltas(table: Table, summed: _Sums) -> list[list[Any]]:
    """What the summed rows add to `table`: one [period, *dimensions, *measures] per rollup row."""
    width, positions = table.width, _POSITIONS[table]
    sums = _sum_by(
        ((hour[:width], *(dimensions[n] for n in positions)), measures)
        for (hour, *dimensions), measures in summed.items()
    )
    return [[*group, *measures] for group, measures in sums.items()]


def _upsert_sql(table: Table) -> str:
    """The statement that adds a JSON array of `_deltas` (its one parameter) to `table`."""
    columns = ("period", *table.dims, *MEASURES)
    extracted = [f"json_extract(value, '$[{n}]')" for n in range(len(columns))]
    dims_json = f"json_array({', '.join(extracted[1 : 1 + len(table.dims)])})"
    added = ", ".join(f"{name} = {name} + excluded.{name}" for name in MEASURES)
    # "WHERE true": SQLite's upsert after a SELECT needs a WHERE to parse unambiguously.
    return (
        f"INSERT INTO {table.name} (period, dims, {', '.join(columns[1:])}) "
        f"SELECT {extracted[0]}, {dims_json}, {', '.join(extracted[1:])} FROM json_each(?) WHERE true "
        f"ON CONFLICT (period, dims) DO UPDATE SET {added}"
    )


_UPSERTS = {table: _upsert_sql(table) for table in TABLES}


def backfill_sql(table: Table) -> str:
    """`table` summed from the audit rows in SQL (as migrations/0007_usage_rollups.sql built it
    from the rows already there; the bench builds its rollups so)."""
    expressions = ", ".join(ROW_DIMENSIONS[name] for name in table.dims)
    period = f"substr(created_at, 1, {table.width})"
    return (
        f"INSERT INTO {table.name} (period, dims, {', '.join(table.dims)}, {', '.join(MEASURES)}) "
        f"SELECT {period}, json_array({expressions}), {expressions}, {', '.join(MEASURES.values())} "
        f"FROM usage GROUP BY {period}, json_array({expressions})"
    )


def upserts(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, tuple[str]]]:
    """The statements (sql, params) that add `rows` to every rollup table."""
    summed = _summed(rows)
    return [(_UPSERTS[table], (json.dumps(_deltas(table, summed)),)) for table in TABLES]
