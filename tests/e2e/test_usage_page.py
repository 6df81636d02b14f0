"""The usage page in headless Chromium (Debian's package, driven by the pinned playwright),
loaded from the Worker on workerd: sign in with the admin token, wait for the data, and
check that what the page shows is what the reports it fetched say.

Traffic made here carries markup in its billing tag and session id (clients choose both):
the page must show it as text and run none of it. The screenshot goes to
$RELAY_SCREENSHOT (the README's docs/usage-page.png is made that way), else a temp file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anthropic
import pytest

from .conftest import ADMIN_TOKEN, audit_rows, create_key

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def usd(amount) -> str:
    """As the page shows dollars (usage_page_script.py's usd)."""
    if amount is None:
        return "—"
    digits = 6 if amount != 0 and abs(amount) < 1 else 2
    return ("-$" if amount < 0 else "$") + f"{abs(amount):.{digits}f}"


def count(number: int) -> str:
    return f"{number:,}"


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (apt-get install chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1440, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture(scope="module")
def hostile(relay):
    """Requests whose billing tag and session id are markup, under a fresh key."""
    marker = os.urandom(4).hex()
    tag = f'<img src=x onerror="window.__xss=1">{marker}'
    session = f"<script>window.__xss=2</script>{marker}"
    key = create_key(relay, name="page", billing_tag=tag)["key"]
    client = anthropic.Anthropic(
        base_url=relay.url,
        api_key=key,
        max_retries=0,
        default_headers={
            "x-claude-code-session-id": session,
            "x-fake-cache-read": "4000",
            "x-fake-cache-write": "1000",
        },
    )
    client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        stream.get_final_message()
    # A model relay has no price for, named with markup too.
    unpriced = f"<b>mystery</b>-{marker}"
    client.messages.create(model=unpriced, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    audit_rows(relay, f"billing_tag LIKE '%{marker}'", 3)
    return tag, session, unpriced


def table(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


def test_the_page_shows_the_reports_it_fetched_and_markup_as_text(relay, browser_context, hostile, tmp_path):
    tag, session, unpriced = hostile
    page = browser_context.new_page()
    fetched: dict[str, dict] = {}
    page.on(
        "response",
        lambda r: (
            fetched.__setitem__(r.url.split("/admin/", 1)[1], r)
            if "/admin/usage" in r.url and "format=csv" not in r.url
            else None
        ),
    )
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    shell = page.goto(relay.url + "/admin/")
    assert shell.status == 200 and "default-src 'self'" in shell.headers["content-security-policy"]
    assert page.is_visible("#login") and not page.is_visible("#report")
    page.fill("#token", ADMIN_TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("body[data-loaded=true]", timeout=30000)

    reports = {path: json.loads(response.text()) for path, response in fetched.items()}
    by_tag = next(r for p, r in reports.items() if p.startswith("usage?group_by=tag&"))
    sessions = next(r for p, r in reports.items() if p.startswith("usage?group_by=session&"))
    recent = next(r for p, r in reports.items() if p.startswith("usage/requests?"))
    by_model = next(r for p, r in reports.items() if p.startswith("usage?group_by=model&"))
    people = next(r for p, r in reports.items() if p.startswith("usage?group_by=group,person&"))
    total = by_tag["total"]

    cards = dict(
        page.eval_on_selector_all(
            ".card", "cs => cs.map(c => [c.dataset.measure, c.querySelector('.value').textContent])"
        )
    )
    assert cards == {
        "cost_usd": usd(total["cost_usd"]),
        "requests": count(total["requests"]),
        "input_tokens": count(total["input_tokens"]),
        "output_tokens": count(total["output_tokens"]),
        "cache_read_tokens": count(total["cache_read_tokens"]),
        "cache_savings_usd": usd(total["cache_savings_usd"]),
    }

    def session_line(name, g):
        return [
            name,
            count(g["requests"]),
            f"{count(g['input_tokens'])} / {count(g['output_tokens'])}",
            count(g["cache_read_tokens"]),
            usd(g["cost_usd"]),
            usd(g["cache_savings_usd"]),
        ]

    expected = [session_line(g["session"] or "(no session)", g) for g in sessions["groups"]]
    if sessions["other"]:
        expected.append(session_line("(other sessions)", sessions["other"]))
    assert table(page, "#sessions") == expected
    assert table(page, "#tags") == [
        [
            g["tag"] or "(no tag)",
            count(g["requests"]),
            count(g["errors"]),
            usd(g["cost_usd"]),
            count(g["unpriced_requests"]),
            count(g["cache_read_tokens"]),
            usd(g["cache_savings_usd"]),
        ]
        for g in by_tag["groups"]
    ]
    assert table(page, "#unpriced") == [
        [g["model"], count(g["unpriced_requests"]), f"{count(g['input_tokens'])} / {count(g['output_tokens'])}"]
        for g in by_model["groups"]
        if g["unpriced_requests"]
    ]
    assert any(line[0] == unpriced for line in table(page, "#unpriced"))
    assert table(page, "#people") == [
        [
            g["group"] or "(no group)",
            g["person"] or "(relay keys)",
            count(g["requests"]),
            count(g["errors"]),
            usd(g["cost_usd"]),
            usd(g["cache_savings_usd"]),
        ]
        for g in people["groups"]
    ]
    recent_rows = table(page, "#recent")
    assert len(recent_rows) == len(recent["data"])
    assert [row[3] for row in recent_rows] == [r["session_id"] or "(no session)" for r in recent["data"]]

    # The markup is on the page as text, and none of it ran or became an element.
    assert any(row[2] == tag and row[3] == session for row in recent_rows)
    assert any(row[0] == tag for row in table(page, "#tags"))
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0 and page.locator("script").count() == 1
    assert problems == []

    storage = page.evaluate("[sessionStorage.getItem('relay-admin-token') !== null, localStorage.length]")
    assert storage == [True, 0] and browser_context.cookies() == []
    page.screenshot(path=os.environ.get("RELAY_SCREENSHOT") or str(tmp_path / "usage-page.png"), full_page=True)

    page.click("#sign-out")
    assert page.is_visible("#login")
    assert page.evaluate("sessionStorage.length") == 0


def test_a_wrong_token_is_refused_and_forgotten(relay, browser_context):
    page = browser_context.new_page()
    page.goto(relay.url + "/admin/")
    page.fill("#token", "not-the-admin-token")
    page.click("#login-form button[type=submit]")
    # A selector, not wait_for_function: the page's CSP forbids the eval that one needs.
    page.wait_for_selector("#login-error:not(:empty)", timeout=30000)
    assert page.text_content("#login-error") == "invalid admin token"
    assert page.evaluate("sessionStorage.length") == 0 and not page.is_visible("#report")
