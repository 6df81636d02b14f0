"""Usage reports on SQLite with the project's migrations, from hand-made audit rows,
and through the admin routes (/admin/usage, /admin/usage/requests, /admin/status)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal

import pytest

from relay import times
from relay.usage import audit_log, reports
from tests.fakes.platform import CountingDatabase, SqliteDatabase
from tests.unit.admin.test_api import NOW, answer, call, message, services

TO = "2027-01-15T08:00:00Z"  # NOW


def run(coroutine):
    return asyncio.run(coroutine)


def nanos(amount) -> int:
    """Dollars as whole nano-dollars, the unit reports add in."""
    return round(Decimal(str(amount)) * 10**9)


def row(created_at: str, **fields) -> dict:
    """An audit row as usage.Meter writes it; `fields` override the defaults, and the
    nano-dollar columns follow the dollar ones."""
    made = {
        "created_at": created_at,
        "day": created_at[:10],
        "key_id": "rk_0000000a",
        "billing_tag": "team-a",
        "session_id": "s-1",
        "client": "claude-cli",
        "surface": "anthropic",
        "provider": "anthropic",
        "method": "POST",
        "path": "/v1/messages",
        "model_requested": "claude-sonnet-4-5",
        "model_served": "claude-sonnet-4-5",
        "stream": 1,
        "status": 200,
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_creation_tokens": 0,
        "cache_read_tokens": 0,
        "cache_markers_added": 0,
        "ttfb_ms": 10,
        "total_ms": 50,
        "cost_usd": 0.0006,
        "cache_savings_usd": 0.0,
        **fields,
    }
    for dollars, nano in (("cost_usd", "cost_nanos"), ("cache_savings_usd", "cache_savings_nanos")):
        made[nano] = None if made[dollars] is None else nanos(made[dollars])
    return made


ROWS = [
    row("2027-01-10T09:00:00Z"),
    row(
        "2027-01-10T23:59:59Z",
        session_id="s-2",
        cache_read_tokens=5000,
        cache_creation_tokens=1000,
        cost_usd=0.00465,
        cache_savings_usd=0.012749999,
    ),
    row(
        "2027-01-11T00:00:00Z",
        billing_tag="team-b",
        key_id="rk_0000000b",
        client="Anthropic/Python",
        stream=0,
        cost_usd=0.1 + 0.2,
        cache_savings_usd=-0.00025,
    ),
    # the price of this model is unknown: tokens, but no cost
    row(
        "2027-01-12T12:00:00Z",
        billing_tag="team-b",
        model_served="mystery-1",
        model_requested="mystery-1",
        cost_usd=None,
        cache_savings_usd=None,
    ),
    # refused by relay: no key, no tokens, no cost; an error but not unpriced
    row(
        "2027-01-12T13:00:00Z",
        key_id=None,
        billing_tag=None,
        status=401,
        error_type="authentication_error",
        provider=None,
        input_tokens=None,
        output_tokens=None,
        cache_creation_tokens=None,
        cache_read_tokens=None,
        cost_usd=None,
        cache_savings_usd=None,
    ),
    # a stream that broke off: status 200, still an error
    row(
        "2027-01-13T08:00:00Z",
        session_id="s-2",
        error_type="overloaded_error",
        provider="openai",
        model_served="gpt-4o-mini",
        cost_usd=0.000027,
        cache_savings_usd=0.0,
    ),
]


@pytest.fixture
def db():
    database = SqliteDatabase()
    for made in ROWS:
        run(audit_log.insert_usage(database, made))
    return database


def report(db, query: str = "", now: float = NOW) -> dict:
    return run(reports.usage_report(db, reports.parse_report_query(query, now)))


def added(parts: list[dict]) -> dict:
    return {name: sum(nanos(p[name]) if name.endswith("_usd") else p[name] for p in parts) for name in reports.MEASURES}


def exact(sums: dict) -> dict:
    return {name: nanos(value) if name.endswith("_usd") else value for name, value in sums.items()}


# --- report math ----------------------------------------------------------------------


@pytest.mark.parametrize("group_by", [*reports.DIMENSIONS, "day,tag", "tag,session"])
def test_the_total_is_the_sum_of_the_groups_and_of_the_rows(db, group_by):
    made = report(db, f"group_by={group_by}")
    assert added(made["groups"]) == exact(made["total"])
    assert made["other"] is None
    assert made["groups"]
    total = made["total"]
    assert total["requests"] == len(ROWS)
    for name in ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"):
        assert total[name] == sum(r[name] or 0 for r in ROWS)
    assert nanos(total["cost_usd"]) == sum(nanos(r["cost_usd"]) for r in ROWS if r["cost_usd"] is not None)
    assert nanos(total["cache_savings_usd"]) == sum(
        nanos(r["cache_savings_usd"]) for r in ROWS if r["cache_savings_usd"] is not None
    )


def test_errors_count_failed_statuses_and_error_types(db):
    assert report(db)["total"]["errors"] == 2  # the 401 and the broken stream


def test_rows_without_a_price_are_unpriced_not_free(db):
    by_model = {g["model"]: g for g in report(db, "group_by=model")["groups"]}
    assert by_model["mystery-1"]["unpriced_requests"] == 1
    assert by_model["mystery-1"]["cost_usd"] == 0 and by_model["mystery-1"]["input_tokens"] == 100
    # The refused request had no tokens: it cost nothing known and is not "unpriced".
    refused = by_model["claude-sonnet-4-5"]
    assert refused["unpriced_requests"] == 0 and refused["errors"] == 1
    assert report(db)["total"]["unpriced_requests"] == 1


def test_groups_by_utc_day_in_day_order(db):
    days = report(db, "group_by=day")["groups"]
    assert [(g["day"], g["requests"]) for g in days] == [
        ("2027-01-10", 2),
        ("2027-01-11", 1),
        ("2027-01-12", 2),
        ("2027-01-13", 1),
    ]
    assert days[0]["cost_usd"] == pytest.approx(0.0006 + 0.00465)


def test_two_dimensions_group_by_both(db):
    groups = report(db, "group_by=day,tag")["groups"]
    assert [(g["day"], g["tag"]) for g in groups] == [
        ("2027-01-10", "team-a"),
        ("2027-01-11", "team-b"),
        ("2027-01-12", None),
        ("2027-01-12", "team-b"),
        ("2027-01-13", "team-a"),
    ]


def test_cache_savings_per_session_and_tag_are_the_rows_sums(db):
    sessions = {g["session"]: g for g in report(db, "group_by=session")["groups"]}
    assert nanos(sessions["s-2"]["cache_savings_usd"]) == nanos(0.012749999)
    assert sessions["s-2"]["cache_read_tokens"] == 5000
    tags = {g["tag"]: g for g in report(db, "group_by=tag")["groups"]}
    assert nanos(tags["team-b"]["cache_savings_usd"]) == nanos(-0.00025)
    # costliest first
    assert [g["tag"] for g in report(db, "group_by=tag")["groups"]] == ["team-b", "team-a", None]


def test_the_time_range_includes_from_and_excludes_to(db):
    made = report(db, "group_by=day&from=2027-01-10T23:59:59Z&to=2027-01-12T13:00:00Z")
    assert made["total"]["requests"] == 3  # 23:59:59, the 11th, the 12th at noon; not 13:00
    assert (made["from"], made["to"]) == ("2027-01-10T23:59:59Z", "2027-01-12T13:00:00Z")


def test_the_default_range_is_the_last_30_days(db):
    made = report(db, now=times.parse_time("2027-02-10T00:00:00Z"))
    assert (made["from"], made["to"]) == ("2027-01-11T00:00:00Z", "2027-02-10T00:00:00Z")
    assert made["total"]["requests"] == 4


def test_the_default_range_takes_in_rows_of_the_current_second(db):
    """Rows are stamped to the whole second, and `to` is exclusive: a row written in the
    same second as the report, before it, must count."""
    asyncio.run(
        db.run(
            "INSERT INTO usage (created_at, day, key_id, surface, method, path, status) "
            "VALUES ('2027-02-10T00:00:00Z', '2027-02-10', 'rk_now', 'anthropic', 'POST', "
            "'/v1/messages', 200)"
        )
    )
    made = report(db, "key=rk_now", now=times.parse_time("2027-02-10T00:00:00Z") + 0.5)
    assert made["total"]["requests"] == 1


def test_key_and_tag_filters(db):
    assert report(db, "key=rk_0000000b")["total"]["requests"] == 1
    assert report(db, "tag=team-b&group_by=model")["total"]["requests"] == 2
    assert report(db, "tag=team-b&key=rk_0000000a")["total"]["requests"] == 1
    # values are bound, never spliced into SQL
    assert report(db, "tag=x%27%20OR%20%271%27%3D%271")["total"]["requests"] == 0


def test_groups_past_the_limit_add_up_in_other(db):
    made = report(db, "group_by=day&limit=2")
    assert [g["day"] for g in made["groups"]] == ["2027-01-10", "2027-01-11"]
    assert made["other"]["requests"] == 3
    assert added(made["groups"] + [made["other"]]) == exact(made["total"])


def test_a_report_is_one_batch_so_its_parts_read_one_state_of_the_log():
    db = CountingDatabase()
    run(audit_log.insert_usage(db, row("2027-01-10T09:00:00Z")))
    db.statements.clear()

    async def no_single_queries(sql, params=()):
        raise AssertionError("a report's queries go in one batch")

    db.all = no_single_queries
    made = report(db, "group_by=tag")
    assert len(db.statements) == 3  # the newest row's id, the groups, the total
    assert made["through_id"] == 1
    assert added(made["groups"]) == exact(made["total"]) and made["total"]["requests"] == 1


# --- CSV ------------------------------------------------------------------------------


def test_csv_has_a_header_and_one_line_per_group_matching_the_json(db):
    run(
        audit_log.insert_usage(
            db, row("2027-01-14T00:00:00Z", billing_tag='a, "quoted"\nteam', cost_usd=1.5, cache_savings_usd=0.25)
        )
    )
    run(audit_log.insert_usage(db, row("2027-01-14T00:00:01Z", billing_tag='=HYPERLINK("x")')))
    made = report(db, "group_by=tag")
    text = reports.report_csv(made)
    assert text.endswith("\r\n") and '"a, ""quoted""\nteam"' in text
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert lines[0] == ["tag", *reports.MEASURES]
    assert len(lines) == 1 + len(made["groups"])
    for line, group in zip(lines[1:], made["groups"]):
        shown = {'a, "quoted"\nteam': 'a, "quoted"\nteam', None: "", '=HYPERLINK("x")': '\'=HYPERLINK("x")'}
        assert line[0] == shown.get(group["tag"], group["tag"])
        for name, value in zip(reports.MEASURES, line[1:]):
            assert Decimal(value) == Decimal(str(group[name])) if name.endswith("_usd") else int(value) == group[name]
    assert ['a, "quoted"\nteam', "1", "0", "100", "20", "0", "0", "1.500000000", "0", "0.250000000"] in lines


def test_csv_marks_the_groups_past_the_limit(db):
    lines = list(csv.reader(io.StringIO(reports.report_csv(report(db, "group_by=day,tag&limit=1")), newline="")))
    assert len(lines) == 3 and lines[2][:3] == ["(other groups)", "(other groups)", "4"]


# --- through the admin API ------------------------------------------------------------


def admin_with_rows():
    svc = services()
    for made in ROWS:
        run(audit_log.insert_usage(svc.db, made))
    return svc


def test_the_report_route_answers_json():
    response = call(admin_with_rows(), "GET", "/admin/usage")
    assert response.status == 200
    assert answer(response)["total"]["requests"] == len(ROWS)  # all within the last 30 days


def test_the_report_route_answers_csv_for_finance():
    svc = admin_with_rows()
    response = call(svc, "GET", "/admin/usage", query="group_by=day&format=csv&from=2027-01-01")
    headers = dict(response.headers)
    assert response.status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"] == 'attachment; filename="relay-usage-day-2027-01-01-2027-01-15.csv"'
    assert headers["cache-control"] == "no-store"
    assert response.body.decode().startswith("day,requests,errors,")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("group_by=team", "group_by must be one of tag, key, model, session, day, client, provider"),
        ("group_by=day,day", "group_by must be one of"),
        ("group_by=day,tag,key", "group_by must be one of"),
        ("from=yesterday", "from must be an ISO 8601 date or time"),
        ("to=2027-13-01", "to must be an ISO 8601 date or time"),
        ("from=2027-01-10&to=2027-01-09", "from must not be later than to"),
        ("from=2025-01-01", "the time range must be at most 366 days"),
        ("format=xlsx", "format must be json or csv"),
        ("limit=0", "limit must be a whole number from 1 to 10000"),
        ("limit=%C2%B2", "limit must be a whole number from 1 to 10000"),  # "²": str.isdigit() takes it
        ("limit=%D9%A3", "limit must be a whole number from 1 to 10000"),  # "٣": int() reads it as 3
        pytest.param(
            "limit=" + "9" * 5000,
            "limit must be a whole number from 1 to 10000",
            id="limit-past-the-4300-digits-int-reads",
        ),
        ("tag=", "tag must be 1 to 256 characters"),
        ("group_by=tag&group_by=day", "group_by is given more than once"),
        ("secret=x", "unknown parameter 'secret'"),
    ],
)
def test_bad_report_parameters_get_400_with_a_clear_message(query, expected):
    response = call(admin_with_rows(), "GET", "/admin/usage", query=query)
    assert response.status == 400
    assert message(response).startswith(expected)


def test_recent_requests_page_backwards_by_id():
    svc = admin_with_rows()
    first = answer(call(svc, "GET", "/admin/usage/requests", query="limit=4"))
    assert [r["id"] for r in first["data"]] == [6, 5, 4, 3] and first["next_before_id"] == 3
    assert first["data"][0]["error_type"] == "overloaded_error" and "key_hash" not in first["data"][0]
    rest = answer(call(svc, "GET", "/admin/usage/requests", query="limit=4&before_id=3"))
    assert [r["id"] for r in rest["data"]] == [2, 1] and rest["next_before_id"] is None
    assert call(svc, "GET", "/admin/usage/requests", query="limit=501").status == 400
    assert call(svc, "GET", "/admin/usage/requests", query="before_id=-1").status == 400
    for odd in ("%C2%B2", "%D9%A3", "9" * 19, "9" * 5000):  # "²", "٣", past SQLite's integers, past int()'s
        for query in (f"limit={odd}", f"before_id={odd}"):
            assert call(svc, "GET", "/admin/usage/requests", query=query).status == 400, query


def test_status_shows_this_isolates_lost_audit_rows_even_without_d1():
    svc = services(db=False)
    svc.state.usage_write_failures = 3
    response = call(svc, "GET", "/admin/status")
    assert response.status == 200
    shown = answer(response)
    assert (shown["usage_write_failures"], shown["telemetry_failures"], shown["database_bound"]) == (3, 0, False)
    assert "unpriced_models" not in shown  # nothing to read them from


def test_status_names_the_unpriced_models_and_where_prices_come_from():
    svc = admin_with_rows()  # ROWS: mystery-1 has tokens and no price
    shown = answer(call(svc, "GET", "/admin/status"))
    assert shown["unpriced_models"] == [{"model": "mystery-1", "unpriced_requests": 1, "priced_now": False}]
    assert shown["prices"]["bundled_models"] > 20
    assert any("Claude Code" in source["source"] for source in shown["prices"]["sources"])


@pytest.mark.parametrize("path", ["/admin/usage", "/admin/usage/requests", "/admin/status"])
def test_reports_need_the_admin_token(path):
    response = call(admin_with_rows(), "GET", path, headers=(("authorization", "Bearer nope"),))
    assert response.status == 401
    assert json.loads(response.body)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("path", ["/admin/usage", "/admin/usage/requests", "/admin/status"])
def test_reports_are_read_only(path):
    response = call(admin_with_rows(), "POST", path)
    assert response.status == 405 and dict(response.headers)["allow"] == "GET"
