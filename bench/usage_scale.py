"""Usage reports at a large team's scale: relay's real schema (migrations/) and report code
(relay.usage.reports) on a SQLite file (the engine D1 runs), at 1M and 10M audit rows.

A synthetic team makes ROWS_PER_DAY requests a day, in Claude Code sessions (a key per
person, a tag per team, a few models, two providers). Each size is measured twice over the
same 30 days: "before", the reports as relay made them from the audit rows (the SQL of the
pre-rollup reports.py, summing cost_nanos), and "after", relay's reports from the rollups.
Also: D1 bytes per audit row and per rollup row (SQLite's dbstat), rollup rows per day, the
cost of writing a group of 100 rows with and without its rollup upserts, and what
retention's batched delete costs. It takes about 40 minutes and 4 GB of disk at 10M rows.

    .venv/bin/python -m bench.usage_scale [--sizes 1000000,10000000] [--out FILE]

It prints its table (and writes it to --out if given); BENCHMARKS.md keeps the last run's,
by hand, under "Usage at scale".

Rows are loaded in bulk and the rollups built from them with the migration's own
INSERT ... SELECT (tests/unit/usage/test_rollups.py shows the live upserts give the same
rows); the database is kept in a temporary folder and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import percentile
from relay import times
from relay.usage import audit_log, reports, retention, rollups

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "migrations"
ROWS_PER_DAY = 100_000
PEOPLE, TEAMS = 200, 20
# A session's main model, and the small one Claude Code uses for some of its requests.
MAIN_MODELS = (("claude-opus-5-5", 0.75), ("claude-sonnet-5-5", 0.25))
SMALL_MODEL, SMALL_SHARE = "claude-haiku-5-5", 0.15
END = times.parse_time("2027-06-01T00:00:00Z")
# The usage page's reports (usage_page_script.py), over its default 30 days.
PAGE = ("group_by=day,tag", "group_by=session&limit=10", "group_by=tag", "group_by=model")
REPORTS = (*PAGE, "group_by=key")


class FileDatabase:
    """relay's Database over a SQLite file (the bench's own: tests/fakes' is in memory)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.row_factory = sqlite3.Row

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        return [dict(row) for row in self.connection.execute(sql, tuple(params))]

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.connection.execute(sql, tuple(params))

    async def batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[dict]]:
        self.connection.execute("BEGIN")
        try:
            found = [[dict(row) for row in self.connection.execute(sql, tuple(params))] for sql, params in statements]
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")
        return found


def _team_rows(rng: random.Random, day_start: float) -> list[tuple]:
    """About ROWS_PER_DAY rows of one day, in time order: sessions of ~50 requests a few
    minutes apart, each a person's (key, team tag), mostly claude-cli."""
    rows: list[tuple] = []
    while len(rows) < ROWS_PER_DAY:
        person = rng.randrange(PEOPLE)
        key_id, tag = f"rk_{person:08x}", f"team-{person % TEAMS:02d}"
        session, client = (
            str(uuid.UUID(int=rng.getrandbits(128))),
            ("claude-cli" if rng.random() < 0.9 else "Anthropic/Python"),
        )
        provider = "anthropic" if rng.random() < 0.9 else "bedrock"
        main = rng.choices([m for m, _ in MAIN_MODELS], [w for _, w in MAIN_MODELS])[0]
        moment = day_start + rng.random() * 86400
        for _ in range(max(1, int(rng.expovariate(1 / 50)))):
            moment = min(moment + rng.expovariate(1 / 120), day_start + 86399)
            model = SMALL_MODEL if rng.random() < SMALL_SHARE else main
            created_at = times.iso(moment)
            inp, out, write, read = (
                rng.randrange(1, 50),
                rng.randrange(1, 2000),
                rng.randrange(0, 3000),
                rng.randrange(0, 80000),
            )
            cost = inp * 4000 + out * 20000 + write * 5000 + read * 200
            rows.append(
                (
                    created_at,
                    created_at[:10],
                    key_id,
                    tag,
                    session,
                    client,
                    "anthropic",
                    provider,
                    f"{provider}-1a2b3c4d",
                    "POST",
                    "/v1/messages",
                    model,
                    model + "-20261101",
                    1,
                    200,
                    None,
                    inp,
                    out,
                    write,
                    0,
                    read,
                    None,
                    0,
                    rng.randrange(200, 3000),
                    rng.randrange(1000, 60000),
                    cost / 1e9,
                    (read * 3800 - write * 1000) / 1e9,
                    cost,
                    read * 3800 - write * 1000,
                )  # fmt: skip
            )
    rows.sort()
    return rows


def _build_rollups(db: FileDatabase) -> None:
    db.connection.execute("BEGIN")
    for table in rollups.TABLES:
        db.connection.execute(f"DELETE FROM {table.name}")
        db.connection.execute(rollups.backfill_sql(table))
    db.connection.execute("COMMIT")


async def _raw_report(db: FileDatabase, query: reports.ReportQuery) -> None:
    """A report as reports.py made it before rollups: every audit row of the range, grouped."""
    [top] = await db.all("SELECT COALESCE(MAX(id), 0) AS id FROM usage")
    where, params = (
        "id <= ? AND created_at >= ? AND created_at < ?",
        [
            top["id"],
            times.iso(query.start),
            times.iso(query.end),
        ],
    )
    dims = [f"{reports.DIMENSIONS[name]} AS d{n}" for n, name in enumerate(query.group_by)]
    keys = ", ".join(f"d{n}" for n in range(len(dims)))
    sums = ", ".join(f"{sql} AS {name}" for name, sql in rollups.MEASURES.items())
    order = ("d0, " if query.group_by[0] == "day" else "") + f"cost_nanos DESC, requests DESC, {keys}"
    await db.all(
        f"SELECT {', '.join(dims)}, {sums} FROM usage WHERE {where} GROUP BY {keys} ORDER BY {order} LIMIT ?",
        (*params, query.limit + 1),
    )
    await db.all(f"SELECT {sums} FROM usage WHERE {where}", params)


def _timed(work, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        asyncio.run(work())
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _bytes(db: FileDatabase, names: Sequence[str]) -> int:
    """Bytes of the pages that hold these tables and indexes (SQLite's dbstat)."""
    marks = ", ".join("?" * len(names))
    [(size,)] = db.connection.execute(f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks})", names)
    return int(size)


def _count(db: FileDatabase, table: str) -> int:
    return int(db.connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _write_cost(db: FileDatabase, rng: random.Random, groups: int) -> tuple[float, float]:
    """ms per group of 100 rows: the audit rows alone, and with their rollup upserts
    (audit_log.insert_usage), on the full database."""
    rows = [dict(zip(audit_log.COLUMNS, row)) for row in _team_rows(rng, END - 86400)[: groups * 100]]
    plain, with_rollups = [], []
    for n in range(groups):
        group = rows[n * 100 : (n + 1) * 100]
        started = time.perf_counter()
        asyncio.run(db.batch([audit_log.insert_statement(group)]))
        plain.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        asyncio.run(audit_log.insert_usage(db, *group))
        with_rollups.append((time.perf_counter() - started) * 1000)
    return percentile(plain, 50), percentile(with_rollups, 50)


def measure(db: FileDatabase, rows: int, now: float, runs_before: int, runs_after: int) -> dict:
    """Reports over the 30 days before `now` (the end of the rows loaded)."""
    result: dict[str, Any] = {"rows": rows}
    audit = ["usage", "usage_by_time", "usage_by_key_time"]
    result["audit_bytes"] = _bytes(db, audit)
    result["rollup_bytes"] = {table.name: _bytes(db, [table.name]) for table in rollups.TABLES}
    result["rollup_rows"] = {table.name: _count(db, table.name) for table in rollups.TABLES}
    result["reports"] = {}
    for text in REPORTS:
        query = reports.parse_report_query(text, now)
        before = _timed(lambda q=query: _raw_report(db, q), runs_before) if runs_before else []
        after = _timed(lambda q=query: reports.usage_report(db, q), runs_after)
        result["reports"][text] = (before, after)

    async def page() -> None:
        for text in PAGE:
            await reports.usage_report(db, reports.parse_report_query(text, now))
        await reports.recent_requests(db, 25, None)

    result["page"] = _timed(page, runs_after)
    return result


def _ms(samples: list[float]) -> str:
    return f"{percentile(samples, 50):,.0f} / {percentile(samples, 99):,.0f}" if samples else "-"


def markdown(results: list[dict], write: tuple[float, float], prune: tuple[int, float], days: float) -> str:
    lines = [
        "## Usage at scale",
        "",
        f"`python -m bench.usage_scale` on this machine ({time.strftime('%Y-%m-%d')}): relay's schema and",
        f"report code on SQLite {sqlite3.sqlite_version} (a file, warm cache), a synthetic team of",
        f"{ROWS_PER_DAY:,} requests a day ({PEOPLE} people in {TEAMS} teams, Claude Code sessions of ~50",
        "requests, 3 models, 2 providers). Reports over the last 30 days, ms p50 / p99; before = from",
        "the audit rows (the pre-rollup queries), after = from the rollups (relay now). The usage",
        "page's load = its four reports and its 25 recent requests, one after another.",
        "",
        "| audit rows | D1 bytes (audit rows) | D1 bytes (rollups) | report | before p50 / p99 | after p50 / p99 |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for result in results:
        rollup_bytes = sum(result["rollup_bytes"].values())
        for n, (text, (before, after)) in enumerate(result["reports"].items()):
            head = (
                f"| {result['rows']:,} | {result['audit_bytes'] / 1e6:,.0f} MB | {rollup_bytes / 1e6:,.1f} MB"
                if n == 0
                else "| | |"
            )
            lines.append(f"{head} | `{text}` | {_ms(before)} | {_ms(after)} |")
        lines.append(f"| | | | usage page load | - | {_ms(result['page'])} |")
    last = results[-1]
    per_row = last["audit_bytes"] / last["rows"]
    rollup_rows = sum(last["rollup_rows"].values())
    per_rollup = sum(last["rollup_bytes"].values()) / rollup_rows
    per_day = rollup_rows / days
    each = ", ".join(f"{count / days:,.0f} {name}" for name, count in last["rollup_rows"].items())
    audit_90_days = 90 * 1e5 * per_row / 1e9
    rollups_a_day = per_day * per_rollup / 1e6
    batches = max(1, prune[0] / retention.BATCH_ROWS)
    lines += [
        "",
        f"- Bytes: {per_row:,.0f} per audit row (its indexes included), {per_rollup:,.0f} per rollup row;",
        f"  this team adds rollup rows a day: {each}.",
        "- D1 size for a team of N requests a day with RELAY_RETENTION_DAYS = 90: about",
        f"  90 x N x {per_row:,.0f} bytes of audit rows (N = 100,000: {audit_90_days:,.1f} GB), plus rollups",
        f"  that grow by ~{rollups_a_day:,.1f} MB a day for this team ({365 * rollups_a_day / 1e3:,.2f} GB a",
        "  year; they grow with distinct key x model x session x hour, not with requests).",
        f"- Writing a group of 100 audit rows on the full database: {write[0]:,.1f} ms alone,",
        f"  {write[1]:,.1f} ms with its rollup upserts (one batch), p50.",
        f"- Retention: deleting {prune[0]:,} expired rows in batches of {retention.BATCH_ROWS:,} took",
        f"  {prune[1]:,.0f} ms ({prune[1] / batches:,.0f} ms a batch).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--runs-before", type=int, default=3)
    parser.add_argument("--runs-after", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rng = random.Random(19)
    results = []
    with tempfile.TemporaryDirectory(prefix="relay-usage-scale-") as folder:
        db = FileDatabase(Path(folder) / "usage.sqlite")
        for migration in sorted(MIGRATIONS.glob("*.sql")):
            db.connection.executescript(migration.read_text())
        # Days are loaded oldest first; each size is measured as the log stands when it has
        # that many rows, its reports over the 30 days before its last row.
        first = END - (sizes[-1] // ROWS_PER_DAY) * 86400
        loaded = 0
        insert = (
            f"INSERT INTO usage ({', '.join(audit_log.COLUMNS)}) VALUES ({', '.join('?' * len(audit_log.COLUMNS))})"
        )
        for size in sizes:
            days = size // ROWS_PER_DAY
            print(f"loading days {loaded}..{days} ...", flush=True)
            for day in range(loaded, days):
                db.connection.execute("BEGIN")
                db.connection.executemany(insert, _team_rows(rng, first + day * 86400))
                db.connection.execute("COMMIT")
            loaded = days
            _build_rollups(db)
            db.connection.execute("ANALYZE")
            rows = _count(db, "usage")
            print(f"measuring {rows:,} rows ...", flush=True)
            results.append(measure(db, rows, first + days * 86400, args.runs_before, args.runs_after))
            print(markdown(results, (0, 0), (0, 0), days), flush=True)
        write = _write_cost(db, rng, 50)
        cutoff = first + 86400  # the oldest day's rows
        started = time.perf_counter()
        deleted = asyncio.run(retention.prune(db, cutoff, max_batches=1000))
        pruned = (deleted, (time.perf_counter() - started) * 1000)
    text = markdown(results, write, pruned, loaded)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
