"""Usage reports through the Worker on workerd: anthropic SDK traffic (stream and not,
two sessions, two keys with billing tags made through the admin API), then the reports
must equal the rows in D1 and the token counts the fake provider reported.

The Worker and its D1 serve the whole test session, so every report here is filtered by
this test's own billing tags.
"""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import anthropic
import httpx
import pytest

from relay.usage import reports

from .conftest import ADMIN_TOKEN, CLIENT_KEY, audit_rows, create_key

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
COUNTED = ("input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens")


def nanos(amount) -> int:
    return round(Decimal(str(amount)) * 10**9)


def traffic(relay, tag: str) -> dict[str, list[anthropic.types.Usage]]:
    """Requests under two new keys (billing tags finance-<tag>, research-<tag>) in two
    sessions; the usage the SDK saw, by billing tag (one failed request has none)."""
    seen: dict[str, list] = {}
    for team, calls in (
        ("finance", [("alpha", False, 2000, 500), ("alpha", True, 0, 0), ("beta", False, 1000, 0)]),
        ("research", [("beta", True, 300, 0), ("alpha", None, 0, 0)]),
    ):
        key = create_key(relay, name=f"reports {team}", billing_tag=f"{team}-{tag}")["key"]
        seen[f"{team}-{tag}"] = []
        for session, stream, cache_read, cache_write in calls:
            client = anthropic.Anthropic(
                base_url=relay.url,
                api_key=key,
                max_retries=0,
                default_headers={
                    "x-claude-code-session-id": f"{tag}-{session}",
                    "x-fake-cache-read": str(cache_read),
                    "x-fake-cache-write": str(cache_write),
                },
            )
            ask = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
            if stream is None:
                with pytest.raises(anthropic.InternalServerError):
                    client.messages.create(**ask, extra_headers={"x-fake-scenario": "status-500"})
            elif stream:
                with client.messages.stream(**ask) as live:
                    seen[f"{team}-{tag}"].append(live.get_final_message().usage)
            else:
                seen[f"{team}-{tag}"].append(client.messages.create(**ask).usage)
    return seen


@pytest.fixture(scope="module")
def produced(relay):
    tag = uuid.uuid4().hex[:12]
    seen = traffic(relay, tag)
    found = audit_rows(relay, f"billing_tag IN ('finance-{tag}', 'research-{tag}')", 5)
    return tag, seen, found


@pytest.fixture
def admin(relay):
    with httpx.Client(base_url=relay.url, headers=ADMIN, timeout=30) as client:
        yield client


def sums(rows: list[dict]) -> dict:
    """The report's measures computed from raw rows (money in nano-dollars)."""
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r["status"] >= 400 or r["error_type"] is not None),
        **{name: sum(r[name] or 0 for r in rows) for name in COUNTED},
        "cost_usd": sum(round(r["cost_usd"] * 1e9) for r in rows if r["cost_usd"] is not None),
        "unpriced_requests": sum(1 for r in rows if r["cost_usd"] is None and r["input_tokens"] is not None),
        "cache_savings_usd": sum(
            round(r["cache_savings_usd"] * 1e9) for r in rows if r["cache_savings_usd"] is not None
        ),
    }


def exact(measures: dict) -> dict:
    return {name: nanos(measures[name]) if name.endswith("_usd") else measures[name] for name in reports.MEASURES}


def test_reports_equal_the_d1_rows_and_the_providers_token_counts(produced, admin):
    tag, seen, rows = produced
    for billing_tag, usages in seen.items():
        answer = admin.get("/admin/usage", params={"group_by": "session", "tag": billing_tag})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        mine = [r for r in rows if r["billing_tag"] == billing_tag]
        assert exact(report["total"]) == sums(mine)
        by_session = {g["session"]: exact(g) for g in report["groups"]}
        assert by_session == {
            session: sums([r for r in mine if r["session_id"] == session])
            for session in {r["session_id"] for r in mine}
        }
        for name, reported in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
        ):
            assert report["total"][name] == sum(getattr(u, reported) for u in usages)
    finance = admin.get("/admin/usage", params={"group_by": "tag", "tag": f"finance-{tag}"}).json()
    # Sonnet: 3000 cache reads save 90% of $3/M; 500 writes cost 25% more than input.
    assert finance["total"]["cache_savings_usd"] == pytest.approx(3000 * 2.7e-6 - 500 * 0.75e-6)
    assert finance["total"]["errors"] == 0 and finance["total"]["requests"] == 3
    research = admin.get("/admin/usage", params={"group_by": "tag", "tag": f"research-{tag}"}).json()
    assert research["total"]["errors"] == 1 and research["total"]["requests"] == 2


def test_grouping_by_tag_and_day_reconciles_with_the_groups(produced, admin):
    tag, _, rows = produced
    for group_by in ("tag", "day,tag", "model", "client", "provider", "key"):
        report = admin.get("/admin/usage", params={"group_by": group_by, "tag": f"finance-{tag}"}).json()
        assert report["other"] is None
        assert (
            {name: sum(exact(g)[name] for g in report["groups"]) for name in reports.MEASURES}
            == exact(report["total"])
            == sums([r for r in rows if r["billing_tag"] == f"finance-{tag}"])
        )


def test_csv_parses_and_matches_the_json(produced, admin):
    tag, _, _ = produced
    params = {"group_by": "session,tag", "tag": f"finance-{tag}"}
    report = admin.get("/admin/usage", params=params).json()
    answer = admin.get("/admin/usage", params={**params, "format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="relay-usage-session-tag-')
    lines = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    assert len(lines) == len(report["groups"]) == 2
    for line, group in zip(lines, report["groups"]):
        assert (line["session"], line["tag"]) == (group["session"], group["tag"])
        for name in reports.MEASURES:
            expected = nanos(group[name]) if name.endswith("_usd") else group[name]
            assert (nanos(line[name]) if name.endswith("_usd") else int(line[name])) == expected


def test_recent_requests_page_through_the_d1_rows(produced, admin):
    _, _, rows = produced
    first = admin.get("/admin/usage/requests", params={"limit": 2}).json()
    second = admin.get("/admin/usage/requests", params={"limit": 2, "before_id": first["next_before_id"]}).json()
    ids = [r["id"] for r in first["data"] + second["data"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    newest = admin.get("/admin/usage/requests", params={"limit": 1, "before_id": rows[-1]["id"] + 1}).json()
    assert newest["data"] == [rows[-1]]


def test_status_shows_no_lost_audit_rows(admin):
    status = admin.get("/admin/status")
    assert status.status_code == 200
    shown = status.json()
    assert (shown["usage_write_failures"], shown["database_bound"]) == (0, True)
    assert shown["prices"]["overrides"] == [] and shown["prices"]["bundled_models"] > 20


def test_bad_parameters_and_relay_keys_are_refused(relay, admin):
    bad = admin.get("/admin/usage", params={"group_by": "team"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.json()["error"]["message"].startswith("group_by must be one of tag, key, model")
    assert admin.get("/admin/usage", params={"from": "2026-11-02", "to": "2026-11-01"}).status_code == 400
    for path in ("/admin/usage", "/admin/usage/requests", "/admin/status"):
        assert httpx.get(relay.url + path, headers={"authorization": f"Bearer {CLIENT_KEY}"}).status_code == 401


@pytest.mark.parametrize("odd", ["²", "٣", "9" * 5000], ids=["superscript-two", "arabic-indic-three", "5000-digits"])
def test_numbers_not_written_in_ascii_digits_are_a_400(admin, odd):
    """str.isdigit() takes "²" (int() then refused it: a 500) and "٣" (int() reads 3)."""
    for path, name in (
        ("/admin/usage/requests", "limit"),
        ("/admin/usage/requests", "before_id"),
        ("/admin/usage", "limit"),
    ):
        answer = admin.get(path, params={name: odd})
        assert answer.status_code == 400, (path, name, answer.text[:200])
        assert answer.json()["error"]["message"].startswith(name)
