"""Usage reports for the admin API, from the rollups (rollups.py) and, for the seconds of a
range that fill no whole hour, the audit log (migrations/0002_usage.sql).

A report sums a time range, grouped by one or two dimensions (tag, key, model, session,
day, client, provider, person, group), and gives a `total` over the same range. Its whole UTC days are
read from a daily rollup, the whole hours left at either end from an hourly one (the
session tables when grouped by session), and the seconds left from the audit rows: some
thousands of rows whatever the traffic (a report by person or group, or by session and model or
provider, which no rollup holds, reads the audit rows). All of a report's queries go to D1 in one batch,
so they see one state of the log: rows written while it runs do not make its parts
disagree. Audit rows past retention (retention.py) are gone, so the seconds of a range
that fill no whole hour count nothing that far back: give such ranges whole hours.

Money is summed in whole nano-dollars (usage.cost_nanos), so every sum is an exact integer
and the total equals the sum of the groups digit for digit (in decimal; JSON carries the
dollars as numbers, CSV as exact decimal text).

A row's cost is NULL when the model has no price, or when no token counts came back
(relay refused the request, or the upstream failed before usage). Neither adds to
`cost_usd`; rows with token counts but no price are counted as `unpriced_requests`,
because their cost is real but unknown.

Every SQL text here is built from fixed fragments; values from the query string are
only ever bound as parameters.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import parse_qsl

from relay import times
from relay.http.messages import whole_number
from relay.services import Database, Row
from relay.usage import audit_log, pricing, rollups

# group_by name -> the SQL expression it groups by in the audit log (fixed text, never user input)
DIMENSIONS = {
    "tag": "billing_tag",
    "key": "key_id",
    "model": "COALESCE(model_served, model_requested)",
    "session": "session_id",
    "day": "day",
    "client": "client",
    "provider": "provider",
    "person": "person_email",  # a signed-in person (identity/gateway_sessions.py); NULL for relay keys
    "group": "group_name",  # the IdP group whose policy applied
}
# ... and in a rollup table
ROLLUP_DIMENSIONS = {
    "tag": "billing_tag",
    "key": "key_id",
    "model": "model",
    "session": "session_id",
    "day": "substr(period, 1, 10)",
    "client": "client",
    "provider": "provider",
}
MAX_DIMENSIONS = 2
DEFAULT_DAYS = 30
MAX_DAYS = 366
DEFAULT_GROUPS = 1000
MAX_GROUPS = 10000
DEFAULT_REQUESTS = 50
MAX_REQUESTS = 500
MAX_FILTER = 256

MEASURES = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "cost_usd",
    "unpriced_requests",
    "cache_savings_usd",
)
_MONEY = ("cost_usd", "cache_savings_usd")
# A report's measure -> the rollup measure it is the sum of (money is kept in nano-dollars).
_SOURCE = {
    **{name: name for name in MEASURES},
    "cost_usd": "cost_nanos",
    "cache_savings_usd": "cache_savings_nanos",
}
# Spreadsheets run a cell that starts with one of these as a formula: CSV text cells
# (session ids and tags are the client's) that do get a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# A report (usage_report) as JSON shows it: each group is its dimensions' values and the
# measures (MEASURES) summed over its rows, money in dollars.
Report = TypedDict(
    "Report",
    {
        "group_by": list[str],
        "from": str,
        "to": str,
        "key": str | None,
        "tag": str | None,
        "through_id": int,
        "groups": list[dict[str, Any]],
        "other": dict[str, Any] | None,
        "total": dict[str, Any],
    },
)


class RequestsPage(TypedDict):
    """A page of audit rows (recent_requests), as the usage page lists them."""

    data: list[Row]
    next_before_id: int | None


class BadQuery(ValueError):
    """A query string the report routes cannot answer; the message says why (for a 400)."""


@dataclass(frozen=True)
class ReportQuery:
    group_by: tuple[str, ...]
    start: float  # epoch seconds, inclusive
    end: float  # epoch seconds, exclusive
    key: str | None = None
    tag: str | None = None
    limit: int = DEFAULT_GROUPS
    format: str = "json"


def _params(query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            raise BadQuery(f"unknown parameter {name[:40]!r}: allowed are {', '.join(allowed)}")
        if name in params:
            raise BadQuery(f"{name} is given more than once")
        params[name] = value
    return params


def _count(text: str | None, name: str, default: int, most: int) -> int:
    if text is None:
        return default
    number = whole_number(text)
    if number is None or not 1 <= number <= most:
        raise BadQuery(f"{name} must be a whole number from 1 to {most}")
    return number


def _moment(text: str | None, name: str, default: float) -> float:
    if text is None:
        return default
    try:
        moment = times.parse_time(text)
        times.iso(moment)  # and within the years the log can hold
    except (ValueError, OverflowError, OSError):
        raise BadQuery(f"{name} must be an ISO 8601 date or time such as 2026-11-01 or 2026-11-01T00:00:00Z") from None
    return moment


def _filter(text: str | None, name: str) -> str | None:
    if text is not None and not 1 <= len(text) <= MAX_FILTER:
        raise BadQuery(f"{name} must be 1 to {MAX_FILTER} characters")
    return text


def parse_report_query(query: str, now: float) -> ReportQuery:
    """The report a `GET /admin/usage` query string asks for; BadQuery when it cannot be had."""
    params = _params(query, ("group_by", "from", "to", "key", "tag", "limit", "format"))
    names = tuple(params.get("group_by", "tag").split(","))
    unknown = [name for name in names if name not in DIMENSIONS]
    if unknown or len(set(names)) != len(names) or len(names) > MAX_DIMENSIONS:
        raise BadQuery(
            f"group_by must be one of {', '.join(DIMENSIONS)}, or two of them separated by a comma (such as day,tag)"
        )
    # Rows are stamped to the whole second and `to` is exclusive, so "up to now" ends at
    # the next whole second: a row of the current second counts.
    end = _moment(params.get("to"), "to", float(math.ceil(now)))
    start = _moment(params.get("from"), "from", end - DEFAULT_DAYS * 86400)
    if start > end:
        raise BadQuery("from must not be later than to")
    if end - start > MAX_DAYS * 86400:
        raise BadQuery(f"the time range must be at most {MAX_DAYS} days")
    format = params.get("format", "json")
    if format not in ("json", "csv"):
        raise BadQuery("format must be json or csv")
    return ReportQuery(
        group_by=names,
        start=start,
        end=end,
        key=_filter(params.get("key"), "key"),
        tag=_filter(params.get("tag"), "tag"),
        limit=_count(params.get("limit"), "limit", DEFAULT_GROUPS, MAX_GROUPS),
        format=format,
    )


def parse_requests_query(query: str) -> tuple[int, int | None]:
    """(limit, before_id) of a `GET /admin/usage/requests` query string."""
    params = _params(query, ("limit", "before_id"))
    limit = _count(params.get("limit"), "limit", DEFAULT_REQUESTS, MAX_REQUESTS)
    before = params.get("before_id")
    before_id = None if before is None else whole_number(before)
    if before is not None and before_id is None:
        raise BadQuery("before_id must be a row id (a whole number)")
    return limit, before_id


def _measures(row: Row) -> dict[str, int]:
    """A result row's sums as ints (D1 may hand numbers back as floats)."""
    return {name: int(row[name] or 0) for name in MEASURES}


def _shown(sums: dict[str, int]) -> dict[str, Any]:
    return {name: pricing.usd(sums[name]) if name in _MONEY else sums[name] for name in MEASURES}


def _filters(query: ReportQuery) -> list[tuple[str, str]]:
    """(column, value) of each filter the report has."""
    return [
        (column, value) for column, value in (("key_id", query.key), ("billing_tag", query.tag)) if value is not None
    ]


def _rollup_columns(query: ReportQuery) -> list[str] | None:
    """The rollup columns a report groups and filters by (a day is any rollup's period); None
    when it groups by a dimension no rollup holds (person, group: read from the audit rows)."""
    if any(name not in ROLLUP_DIMENSIONS for name in query.group_by):
        return None
    grouped = [ROLLUP_DIMENSIONS[name] for name in query.group_by if name != "day"]
    return grouped + [column for column, _ in _filters(query)]


def _plan(
    start: float, end: float, tiers: tuple[rollups.Table, ...]
) -> list[tuple[rollups.Table | None, float, float]]:
    """[start, end) as pieces to read: (a rollup table, its whole periods), longest periods
    first, then (None, seconds left over) from the audit rows."""
    if start >= end:
        return []
    if not tiers:
        return [(None, start, end)]
    table, rest = tiers[0], tiers[1:]
    first = math.ceil(start / table.seconds) * table.seconds
    last = math.floor(end / table.seconds) * table.seconds
    if first >= last:
        return _plan(start, end, rest)
    return [*_plan(start, first, rest), (table, first, last), *_plan(last, end, rest)]


def _sources(query: ReportQuery, grouped: bool) -> tuple[str, list[Any]]:
    """The SQL of rows whose sums are the report (UNION ALL of per-piece sums), and its
    parameters. `grouped`: with the dimensions as d0, d1."""
    filters = _filters(query)
    matched = "".join(f" AND {column} = ?" for column, _ in filters)
    group_keys = ", ".join(f"d{n}" for n in range(len(query.group_by)))
    parts: list[str] = []
    params: list[Any] = []
    columns = _rollup_columns(query)
    tiers = rollups.tiers(columns) if columns is not None else ()
    for table, start, end in _plan(query.start, query.end, tiers):
        if table is not None:
            dims = [f"{ROLLUP_DIMENSIONS[name]} AS d{n}, " for n, name in enumerate(query.group_by)] if grouped else []
            where = f"period >= ? AND period < ?{matched}"
            parts.append(f"SELECT {''.join(dims)}{', '.join(rollups.MEASURES)} FROM {table.name} WHERE {where}")
            params += [times.iso(start)[: table.width], times.iso(end)[: table.width]]
        else:
            dims = [f"{DIMENSIONS[name]} AS d{n}, " for n, name in enumerate(query.group_by)] if grouped else []
            sums = ", ".join(f"{sql} AS {name}" for name, sql in rollups.MEASURES.items())
            group = f" GROUP BY {group_keys}" if grouped else ""
            parts.append(
                f"SELECT {''.join(dims)}{sums} FROM usage WHERE created_at >= ? AND created_at < ?{matched}{group}"
            )
            params += [times.iso(start), times.iso(end)]
        params += [value for _, value in filters]
    return " UNION ALL ".join(parts), params


_TOTALS = ", ".join(f"COALESCE(SUM({_SOURCE[name]}), 0) AS {name}" for name in MEASURES)


async def usage_report(db: Database, query: ReportQuery) -> Report:
    """The report as a JSON-ready dict: groups (at most `limit`, the costliest first, by
    day first when grouped by day), `other` (what groups past the limit add up to, or
    None) and `total` (= the groups + other, exactly). `through_id`: the newest audit row
    when it was made."""
    keys = ", ".join(f"d{n}" for n in range(len(query.group_by)))
    order = ("d0, " if query.group_by[0] == "day" else "") + f"cost_usd DESC, requests DESC, {keys}"
    grouped_sql, grouped_params = _sources(query, grouped=True)
    total_sql, total_params = _sources(query, grouped=False)
    [top], rows, [total_row] = await db.batch(
        [
            ("SELECT COALESCE(MAX(id), 0) AS id FROM usage", ()),
            (
                f"SELECT {keys}, {_TOTALS} FROM ({grouped_sql}) GROUP BY {keys} ORDER BY {order} LIMIT ?",
                (*grouped_params, query.limit + 1),
            ),
            (f"SELECT {_TOTALS} FROM ({total_sql})", total_params),
        ]
    )
    total = _measures(total_row)
    groups = [(row, _measures(row)) for row in rows[: query.limit]]
    other = None
    if len(rows) > query.limit:
        other = {name: total[name] - sum(sums[name] for _, sums in groups) for name in MEASURES}
    return {
        "group_by": list(query.group_by),
        "from": times.iso(query.start),
        "to": times.iso(query.end),
        "key": query.key,
        "tag": query.tag,
        "through_id": int(top["id"]),
        "groups": [
            {**{name: row[f"d{n}"] for n, name in enumerate(query.group_by)}, **_shown(sums)} for row, sums in groups
        ],
        "other": None if other is None else _shown(other),
        "total": _shown(total),
    }


def _text_cell(value: str | None) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def report_csv(report: Report) -> str:
    """The report's groups as RFC 4180 CSV (CRLF lines, quotes where needed): a header, one
    line per group, and an "(other groups)" line when the groups were cut at the limit.
    No total line, so a column sum in a spreadsheet is the total."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    dims = report["group_by"]
    writer.writerow([*dims, *MEASURES])
    lines = [(group, [_text_cell(group[name]) for name in dims]) for group in report["groups"]]
    if report["other"] is not None:
        lines.append((report["other"], ["(other groups)"] * len(dims)))
    for sums, labels in lines:
        writer.writerow(
            [
                *labels,
                *(
                    pricing.usd_text(round(sums[name] * pricing.NANO)) if name in _MONEY else sums[name]
                    for name in MEASURES
                ),
            ]
        )
    return out.getvalue()


def csv_filename(report: Report) -> str:
    """A file name that says what the CSV holds, e.g. relay-usage-day-tag-2026-10-26-2026-11-25.csv."""
    return f"relay-usage-{'-'.join(report['group_by'])}-{report['from'][:10]}-{report['to'][:10]}.csv"


async def recent_requests(db: Database, limit: int, before_id: int | None) -> RequestsPage:
    """Audit rows, newest first: `limit` of them, older than `before_id` when given.
    `next_before_id` continues the listing (None once a page comes back short)."""
    columns = ", ".join(("id",) + audit_log.COLUMNS)
    if before_id is None:
        rows = await db.all(f"SELECT {columns} FROM usage ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = await db.all(f"SELECT {columns} FROM usage WHERE id < ? ORDER BY id DESC LIMIT ?", (before_id, limit))
    for row in rows:  # dollars as the exact nano-dollars show them
        row["cost_usd"], row["cache_savings_usd"] = (
            pricing.usd(row["cost_nanos"]),
            pricing.usd(row["cache_savings_nanos"]),
        )
    return {"data": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None}


async def unpriced_models(
    db: Database, now: float, overrides: tuple[tuple[str, pricing.Price], ...] = ()
) -> list[dict[str, Any]]:
    """Models of the last DEFAULT_DAYS with requests relay had no price for, the most such
    requests first, and whether the price table (RELAY_PRICES, then prices.json) has one now."""
    report = await usage_report(db, parse_report_query(f"group_by=model&limit={MAX_GROUPS}", now))
    found = sorted(
        (group for group in report["groups"] if group["unpriced_requests"]),
        key=lambda group: (-group["unpriced_requests"], group["model"] or ""),
    )
    return [
        {
            "model": group["model"],
            "unpriced_requests": group["unpriced_requests"],
            "priced_now": pricing.price_of(group["model"], overrides) is not None,
        }
        for group in found
    ]
