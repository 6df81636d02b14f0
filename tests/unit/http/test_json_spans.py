"""The small JSON helpers json_spans.py shares (its spans are tested with the markers that use them)."""

from __future__ import annotations

from relay.http.json_spans import dumps, loads_or_none, unknown_fields


def test_loads_or_none_is_none_only_for_what_is_not_json():
    assert loads_or_none(b'{"a": 1}') == {"a": 1}
    assert loads_or_none("[1, 2]") == [1, 2]
    assert loads_or_none(b"{oops") is None
    assert loads_or_none(b"") is None


def test_unknown_fields_are_named_sorted():
    assert unknown_fields({"name": 1, "zeta": 2, "alpha": 3}, ("name",)) == "unknown fields: alpha, zeta"
    assert unknown_fields({"name": 1}, ("name", "billing_tag")) is None


def test_dumps_is_compact_and_keeps_text_as_it_is():
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert dumps({"a": "\ud800"}) == '{"a":"\\ud800"}'  # a lone surrogate stays escaped: UTF-8 holds none
