"""CORS: relay answers preflights for the allowed origins and lets them read its answers."""

from __future__ import annotations

import json

import pytest

from relay.http import cors
from relay.http.errors import Refused
from relay.http.messages import Headers, Response

ALLOWED = ("https://app.example",)


def _preflight(origin: str, requested: str = "") -> Headers:
    fields = [("origin", origin), ("access-control-request-method", "POST")]
    return Headers(fields + ([("access-control-request-headers", requested)] if requested else []))


def test_a_preflight_needs_an_origin_and_a_requested_method():
    assert cors.is_preflight("OPTIONS", _preflight("https://app.example"))
    assert not cors.is_preflight("OPTIONS", Headers([("origin", "https://app.example")]))
    assert not cors.is_preflight("POST", _preflight("https://app.example"))


def test_an_allowed_origin_gets_every_header_it_asks_for():
    asked = "x-api-key, anthropic-version, x-stainless-os"
    answer = cors.preflight(_preflight("https://app.example", asked), ALLOWED)
    fields = dict(answer.headers)
    assert answer.status == 204 and answer.body == b""
    assert fields["access-control-allow-origin"] == "https://app.example"
    assert fields["access-control-allow-headers"] == asked
    assert "POST" in fields["access-control-allow-methods"] and "Origin" in fields["vary"]


def test_another_origin_is_refused_in_the_clients_format():
    with pytest.raises(Refused) as caught:
        cors.preflight(_preflight("https://evil.example"), ALLOWED)
    answer = caught.value.response("openai")
    assert answer.status == 403
    assert "https://evil.example" in json.loads(answer.body)["error"]["message"]


def test_a_wildcard_allows_any_origin_but_not_a_missing_one():
    assert cors.origin_allowed("https://anywhere.example", ("*",))
    assert not cors.origin_allowed(None, ("*",)) and not cors.origin_allowed("", ("*",))
    assert not cors.origin_allowed("https://app.example", ())


def test_an_allowed_origin_may_read_every_field_but_the_safelisted_ones():
    response = Response(
        200, [("content-type", "application/json"), ("request-id", "req_1"), ("retry-after", "3")], b"{}"
    )
    fields = cors.decorate(response, "https://app.example", ALLOWED).headers
    assert ("access-control-allow-origin", "https://app.example") in fields
    assert dict(fields)["access-control-expose-headers"] == "request-id, retry-after"


def test_an_answer_to_another_origin_is_left_as_it_is():
    response = Response(200, [("request-id", "req_1")], b"{}")
    assert cors.decorate(response, "https://evil.example", ALLOWED).headers == [("request-id", "req_1")]
