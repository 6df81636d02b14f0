"""The Cron Trigger on workerd, run through wrangler dev's scheduled-test route
(LocalWorker.run_scheduled): the export writes every audit row to the local R2 bucket as
NDJSON files per hour, which read back equal D1 row for row; retention deletes audit rows
older than RELAY_RETENTION_DAYS in bounded batches and leaves the rollups as they were."""

from __future__ import annotations

import json
import time
import tomllib

import anthropic
import httpx
import openai
import pytest

from devtools.local_worker import LocalWorker
from devtools.runtime import ROOT
from relay import times
from relay.usage import export, retention, rollups

from .conftest import ADMIN_TOKEN, ANTHROPIC_UPSTREAM_KEY, CLIENT_KEY, OPENAI_UPSTREAM_KEY, audit_rows

DAYS = 30
OLD_ROWS = 2 * retention.BATCH_ROWS + 7  # three batches


@pytest.fixture(scope="module")
def relay_with_cron(anthropic_upstream, openai_upstream):
    with LocalWorker(
        {
            "RELAY_CLIENT_KEYS": CLIENT_KEY,
            "ANTHROPIC_API_KEYS": ANTHROPIC_UPSTREAM_KEY,
            "OPENAI_API_KEYS": OPENAI_UPSTREAM_KEY,
            "UPSTREAM_ANTHROPIC_URL": anthropic_upstream.url,
            "UPSTREAM_OPENAI_URL": openai_upstream.url,
            "RELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "RELAY_RETENTION_DAYS": str(DAYS),
        },
    ) as worker:
        yield worker


BUCKET = tomllib.loads((ROOT / "wrangler.toml").read_text())["r2_buckets"][0]["bucket_name"]


def test_the_export_writes_every_row_to_r2_as_d1_holds_it(relay_with_cron, tag):
    worker = relay_with_cron
    headers = {"x-claude-code-session-id": tag}
    claude = anthropic.Anthropic(base_url=worker.url, api_key=CLIENT_KEY, max_retries=0, default_headers=headers)
    claude.messages.create(model="claude-opus-5-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "é"}]
    ) as s:
        s.get_final_message()
    gpt = openai.OpenAI(base_url=worker.url + "/openai/v1", api_key=CLIENT_KEY, max_retries=0, default_headers=headers)
    gpt.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    httpx.post(worker.url + "/v1/messages", json={}, headers={"x-api-key": "wrong", **headers})  # a 401 row
    audit_rows(worker, f"session_id = '{tag}'", 4)

    assert worker.run_scheduled("*/15 * * * *")["outcome"] == "ok"

    rows = worker.query(f"SELECT {', '.join(export.FIELDS)} FROM usage ORDER BY id")
    for row in rows:  # as the export shows money: the exact nano-dollars, in dollars
        row["cost_usd"] = None if row["cost_nanos"] is None else row["cost_nanos"] / 1e9
        row["cache_savings_usd"] = None if row["cache_savings_nanos"] is None else row["cache_savings_nanos"] / 1e9
    files = export.files(rows)  # the documented layout: a file per hour, named by its first row
    read_back = {key: worker.r2_object(BUCKET, key).decode() for key in files}
    for key, text in read_back.items():
        assert text.endswith("\n")
        assert [json.loads(line) for line in text.splitlines()] == files[key], key
    assert sum(len(group) for group in files.values()) == len(rows) >= 4

    status = httpx.get(worker.url + "/admin/status", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert status["export"]["bucket_bound"] is True
    assert (status["export"]["through_id"], status["export"]["pending_rows"]) == (rows[-1]["id"], 0)
    assert status["export"]["rows"] == len(rows) and status["export"]["failures"] == 0


def _rollups(worker: LocalWorker) -> dict[str, list[dict]]:
    return {t.name: worker.query(f"SELECT * FROM {t.name} ORDER BY period, dims") for t in rollups.TABLES}


def test_the_cron_deletes_expired_rows_in_batches_and_keeps_the_rollups(relay_with_cron, tag):
    worker = relay_with_cron
    client = anthropic.Anthropic(
        base_url=worker.url, api_key=CLIENT_KEY, max_retries=0, default_headers={"x-claude-code-session-id": tag}
    )
    client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    [recent] = audit_rows(worker, f"session_id = '{tag}'", 1)
    # Rows from before the retention window (and one just inside it), as if logged then.
    now = time.time()
    expired, kept = times.iso(now - (DAYS + 5) * 86400), times.iso(now - (DAYS - 1) * 86400)
    worker.query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < "
        f"{OLD_ROWS}) INSERT INTO usage (created_at, day, surface, method, path, status, session_id) "
        f"SELECT '{expired}', '{expired[:10]}', 'anthropic', 'POST', '/v1/messages', 200, 'old-{tag}' FROM n"
    )
    worker.query(
        "INSERT INTO usage (created_at, day, surface, method, path, status, session_id) "
        f"VALUES ('{kept}', '{kept[:10]}', 'anthropic', 'POST', '/v1/messages', 200, 'kept-{tag}')"
    )
    before = _rollups(worker)
    assert before["usage_daily"], "the served request's row added to the rollups"

    assert worker.run_scheduled("17 * * * *")["outcome"] == "ok"

    assert worker.query(f"SELECT COUNT(*) AS n FROM usage WHERE session_id = 'old-{tag}'") == [{"n": 0}]
    assert len(worker.query(f"SELECT id FROM usage WHERE session_id IN ('kept-{tag}', '{tag}')")) == 2
    assert _rollups(worker) == before
    assert f"retention deleted {OLD_ROWS} audit rows older than {DAYS} days" in worker.log()
    assert recent["status"] == 200
