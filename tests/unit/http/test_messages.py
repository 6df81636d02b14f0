"""The plain HTTP values and the small readings of them the core shares (messages.py)."""

from __future__ import annotations

import json

import pytest

from relay.http.messages import Headers, content_kind, json_response, whole_number


@pytest.mark.parametrize(
    "content_type, kind",
    [
        ("text/event-stream", "events"),
        ("Text/Event-Stream; charset=utf-8", "events"),
        ("application/json", "json"),
        ("application/problem+json; charset=utf-8", "json"),
        ("application/octet-stream", "other"),
        ("text/plain", "other"),
        ("", "other"),
        (None, "other"),
    ],
)
def test_a_body_is_classified_by_its_content_type(content_type, kind):
    assert content_kind(content_type) == kind


def test_a_json_response_leads_with_its_content_type_then_the_fields_given():
    response = json_response(201, {"id": "rk_1"}, (("cache-control", "no-store"),))
    assert response.status == 201
    assert response.headers == [("content-type", "application/json"), ("cache-control", "no-store")]
    assert json.loads(response.body) == {"id": "rk_1"}


@pytest.mark.parametrize("text, number", [("0", 0), ("42", 42), ("1" * 18, int("1" * 18))])
def test_whole_numbers_are_ascii_digits(text, number):
    assert whole_number(text) == number


@pytest.mark.parametrize("text", ["", " 1", "+1", "-1", "1_000", "1.0", "\u00b2", "\u0663", "1" * 19])
def test_anything_else_is_no_whole_number(text):
    assert whole_number(text) is None


def test_header_names_are_case_insensitive():
    assert Headers([("Content-Type", "text/plain")]).get("content-type") == "text/plain"
