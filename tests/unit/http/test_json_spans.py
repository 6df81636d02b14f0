"""The small JSON helpers json_spans.py shares (its spans are tested with the markers that use them)."""

from __future__ import annotations

import codecs
import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.http.json_spans import dumps, loads_or_none, unknown_fields


def test_loads_or_none_is_none_only_for_what_is_not_json():
    assert loads_or_none(b'{"a": 1}') == {"a": 1}
    assert loads_or_none("[1, 2]") == [1, 2]
    assert loads_or_none(b"{oops") is None
    assert loads_or_none(b"") is None


@given(st.text(), st.booleans())
@example('{"a": "é✓"}', True)
@example('"\ud800"', False)
@example("", True)
def test_loads_or_none_reads_utf8_bytes_as_json_loads_does(text, bom):
    document = (codecs.BOM_UTF8 if bom else b"") + json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert loads_or_none(document) == json.loads(document) == text


def test_loads_or_none_is_none_for_bytes_not_utf8_as_json_loads_refuses_them():
    with pytest.raises(ValueError):
        json.loads(b'"\xff"')
    assert loads_or_none(b'"\xff"') is None


def test_unknown_fields_are_named_sorted():
    assert unknown_fields({"name": 1, "zeta": 2, "alpha": 3}, ("name",)) == "unknown fields: alpha, zeta"
    assert unknown_fields({"name": 1}, ("name", "billing_tag")) is None


def test_dumps_is_compact_and_keeps_text_as_it_is():
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert dumps({"a": "\ud800"}) == '{"a":"\\ud800"}'  # a lone surrogate stays escaped: UTF-8 holds none
