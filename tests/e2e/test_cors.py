"""Browser clients: preflights answered by relay, allowed origins only, useful fields exposed."""

from __future__ import annotations

import httpx

from .conftest import ALLOWED_ORIGIN, CLIENT_KEY

REQUESTED = "x-api-key, anthropic-version, anthropic-dangerous-direct-browser-access, x-stainless-os"


def _preflight(relay, origin, path="/v1/messages"):
    return httpx.options(
        relay.url + path,
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": REQUESTED,
        },
    )


def test_preflight_from_an_allowed_origin(relay, anthropic_upstream):
    before = anthropic_upstream.count
    response = _preflight(relay, ALLOWED_ORIGIN)

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == REQUESTED
    assert anthropic_upstream.count == before  # relay answers preflights itself, without a key


def test_preflight_from_another_origin_is_refused(relay):
    response = _preflight(relay, "https://evil.example", "/openai/v1/chat/completions")

    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    assert "evil.example" in response.json()["error"]["message"]


def test_response_to_an_allowed_origin_exposes_provider_fields(relay):
    response = httpx.post(
        relay.url + "/v1/messages",
        headers={
            "origin": ALLOWED_ORIGIN,
            "x-api-key": CLIENT_KEY,
            "anthropic-version": "2023-06-01",
            "x-fake-scenario": "status-429",
        },
        json={"model": "m", "max_tokens": 1, "messages": []},
    )

    assert response.status_code == 429
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = {name.strip() for name in response.headers["access-control-expose-headers"].split(",")}
    assert {"request-id", "retry-after", "anthropic-ratelimit-requests-remaining"} <= exposed


def test_errors_made_by_relay_carry_cors_fields_too(relay):
    """Otherwise a browser sees an opaque network error instead of the 401 message."""
    response = httpx.post(relay.url + "/v1/messages", headers={"origin": ALLOWED_ORIGIN}, json={})

    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
