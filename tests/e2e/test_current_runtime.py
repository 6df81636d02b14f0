"""What the current runtime (Pyodide 314, the `workers` SDK) does differently from the one
before it, each handled once in the adapter (src/entry.py), each seen through the Worker."""

from __future__ import annotations

import httpx

from .conftest import ADMIN_TOKEN, CLIENT_KEY, audit_rows, create_key

ANTHROPIC = {"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def test_a_request_without_a_body_is_answered(relay):
    """A GET's body is JsNull, not None: relay once answered such requests with a 500."""
    models = httpx.get(relay.url + "/v1/models", headers=ANTHROPIC)
    status = httpx.get(relay.url + "/admin/status", headers=ADMIN)
    assert models.status_code == 200 and models.json()["data"]
    assert status.status_code == 200 and status.json()["database_bound"] is True


def test_an_upstream_answer_without_a_body_passes_as_it_is(relay, tag):
    """An answer's missing body is JsNull too (a 204's)."""
    response = httpx.post(
        relay.url + "/v1/messages",
        json=MESSAGE,
        headers={**ANTHROPIC, "x-test-tag": tag, "x-fake-scenario": "status-204", "x-claude-code-session-id": tag},
    )
    assert (response.status_code, response.content) == (204, b"")
    assert audit_rows(relay, f"session_id = '{tag}'", 1)[0]["status"] == 204


def test_sql_null_reaches_relay_as_none(relay):
    """D1 rows keep SQL NULL as JsNull through to_py(); a key without a budget once made the
    admin API fail with `float() argument must be ... not 'JsNull'`."""
    created = create_key(relay, name="no budget, no models")
    shown = httpx.get(relay.url + f"/admin/keys/{created['id']}", headers=ADMIN)
    assert shown.status_code == 200, shown.text
    assert shown.json()["monthly_budget_usd"] is None and shown.json()["rpm_limit"] is None


def test_an_upstream_status_the_runtime_cannot_pass_on_is_a_bad_gateway(relay, tag):
    """The runtime's Response takes statuses 200-599 only; relay answers 502 in the client's
    format (never the runtime's 500 with a Python traceback) and logs the request."""
    response = httpx.post(
        relay.url + "/v1/messages",
        json=MESSAGE,
        headers={**ANTHROPIC, "x-test-tag": tag, "x-fake-scenario": "status-600", "x-claude-code-session-id": tag},
    )
    assert response.status_code == 502, response.text
    assert response.json()["error"]["type"] == "api_error"
    assert "Traceback" not in response.text
    assert audit_rows(relay, f"session_id = '{tag}'", 1)[0]["status"] == 502
