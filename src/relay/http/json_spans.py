"""Where the parts of a JSON request body lie in its text, noted while parsing it once.

Relay adds prompt-cache markers by splicing a few bytes into the body the client sent,
so that every other byte (key order, spacing, escapes, unknown fields) stays as it was.
That needs the offsets of the blocks it may mark. `loads` parses a body like json.loads
(the same value, the same errors) and notes on the way the span of every top-level value
and of every item of the (short) top-level arrays named in `ITEMIZED`. Values are parsed
by the stdlib's C scanner; Python runs once per top-level key and per item of those
arrays, never per byte. The long `messages` array is parsed whole; the spans of its last
few items, the only ones relay marks, are found afterwards from its end (`last_items`).

The small JSON helpers the rest of relay shares live here too: `dumps` (compact text),
`loads_or_none` (a frame or body that may not be JSON) and `unknown_fields`.
"""

from __future__ import annotations

import codecs
import gc
import json
import json.decoder
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from relay.http.text_bounds import LONE_SURROGATE

# The top-level arrays whose items get spans while parsing: short parts of a Messages prompt.
ITEMIZED = frozenset({"tools", "system"})
# How clients commonly serialise JSON (JavaScript's JSON.stringify, Python's json.dumps):
# items written this way are found by comparing text, without reading the array again.
# (separators, ensure_ascii) of each.
_STYLES = (
    ((",", ":"), False),
    ((", ", ": "), True),
    ((",", ":"), True),
    ((", ", ": "), False),
)

Span = tuple[int, int]  # [start, end) in the text

# The stdlib's C scanners, which typeshed does not describe: (value, end) of the value at an
# index, and (the string, its end) of a string whose opening quote is just before an index.
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass
class Layout:
    """The decoded body text and where its top-level parts are."""

    text: str
    values: dict[str, Span] = field(default_factory=dict)  # top-level key -> its value's span
    items: dict[str, list[Span]] = field(default_factory=dict)  # array key -> its items' spans
    repeated: set[str] = field(default_factory=set)  # keys that occur more than once


def _skip(text: str, index: int) -> int:
    blank = _SPACE.match(text, index)  # always matches, if only nothing
    return blank.end() if blank is not None else index


def _value(text: str, index: int) -> tuple[Any, int]:
    try:
        return _scan(text, index)
    except StopIteration:
        raise ValueError(f"no JSON value at {index}") from None


def dumps(document: Any) -> str:
    """`document` as compact JSON text, other characters than ASCII as themselves, and always
    encodable as UTF-8: JSON lets a client send a lone surrogate ("\\ud800"), which no UTF-8
    text holds, so a document holding one is written in ASCII, that surrogate escaped as
    the client sent it (the provider decides what it means)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() or not LONE_SURROGATE.search(text):
        return text
    return json.dumps(document, separators=(",", ":"))


def loads_or_none(data: bytes | str) -> Any:
    """json.loads(data), or None when `data` is not JSON. Bytes are read as UTF-8 the way
    json.loads reads it (a leading BOM, encoded surrogates), without its detection of UTF-16
    and UTF-32, which costs Python lines on every frame: every caller's bytes are an event
    stream's (UTF-8 by definition) or a provider's answer."""
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
        return json.loads(text)
    except ValueError:
        return None


def unknown_fields(document: Iterable[str], allowed: Iterable[str]) -> str | None:
    """ "unknown fields: a, b", naming the fields of `document` (an object's keys) that are
    not `allowed`, or None when it has none."""
    unknown = sorted(set(document) - set(allowed))
    return f"unknown fields: {', '.join(unknown)}" if unknown else None


def value_after(text: str, index: int) -> Any:
    """The value that starts at `index`, after any whitespace."""
    return _value(text, _skip(text, index))[0]


def items(text: str, start: int) -> tuple[list[Any], list[Span], int]:
    """The values and spans of the items of the array at text[start] ('['), and its end."""
    values: list[Any] = []
    spans: list[Span] = []
    index = _skip(text, start + 1)
    if text.startswith("]", index):
        return values, spans, index + 1
    while True:
        value, end = _value(text, index)
        values.append(value)
        spans.append((index, end))
        index = _skip(text, end)
        if text.startswith("]", index):
            return values, spans, index + 1
        if not text.startswith(",", index):
            raise ValueError(f"expected ',' or ']' at {index}")
        index = _skip(text, index + 1)


def members(text: str, start: int, layout: Layout | None = None) -> tuple[dict[str, Any], int]:
    """The object at text[start] ('{') and its end. With a layout, note the spans of its
    values, and read the items of the arrays in ITEMIZED one by one, noting theirs."""
    found: dict[str, Any] = {}
    index = _skip(text, start + 1)
    if text.startswith("}", index):
        return found, index + 1
    while True:
        if not text.startswith('"', index):
            raise ValueError(f"expected a key at {index}")
        key, index = _scanstring(text, index + 1)
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise ValueError(f"expected ':' at {index}")
        index = _skip(text, index + 1)
        if layout is not None and key in ITEMIZED and text.startswith("[", index):
            value, spans, end = items(text, index)
            layout.items[key] = spans
        else:
            value, end = _value(text, index)
            if layout is not None:
                layout.items.pop(key, None)
        if layout is not None:
            if key in found:
                layout.repeated.add(key)
            layout.values[key] = (index, end)
        found[key] = value
        index = _skip(text, end)
        if text.startswith("}", index):
            return found, index + 1
        if not text.startswith(",", index):
            raise ValueError(f"expected ',' or '}}' at {index}")
        index = _skip(text, index + 1)


def _back(text: str, index: int, skipped: str) -> int:
    """`index` moved left past every character in `skipped`."""
    while index > 0 and text[index - 1] in skipped:
        index -= 1
    return index


def _item_before(text: str, end: int, item: Any, floor: int) -> int | None:
    """Where the array item `item` that ends at `end` starts, if it is written in one of
    the common styles. A match is exact: a shorter suffix of an item's text that is itself
    that whole item cannot exist (it would have to start inside a string and end outside)."""
    for separators, ensure_ascii in _STYLES:
        written = json.dumps(item, separators=separators, ensure_ascii=ensure_ascii)
        if end - len(written) >= floor and text.startswith(written, end - len(written)):
            return end - len(written)
    return None


def last_items(text: str, span: Span, values: list[Any], count: int) -> list[Span]:
    """The spans of the last `count` items of the array at `span` (its parsed items:
    `values`), found from its end; by reading it item by item if they are written oddly."""
    spans: list[Span] = []
    end = _back(text, span[1] - 1, " \t\n\r")
    for item in reversed(values[len(values) - count :]):
        start = _item_before(text, end, item, span[0] + 1)
        if start is None:
            return items(text, span[0])[1][len(values) - count :]
        spans.append((start, end))
        end = _back(text, start, " \t\n\r,")
    return spans[::-1]


def loads(body: bytes, with_layout: bool = True) -> tuple[Any, Layout | None]:
    """json.loads(body) and, when the body is a UTF-8 JSON object and `with_layout`, its
    layout (else None: then json.loads parses it alone, with no Python per field).

    Anything this reader does not take (another encoding, a byte-order mark, a top-level
    array, invalid JSON) is handed to json.loads, so values and errors stay exactly its own.
    The cycle collector is off meanwhile: parsing makes one object per value and no cycle,
    and the collector's passes over the growing heap made a long body's parse superlinear
    (CPython, 16 MB of small messages: 1.0 s with them, 0.3 s without)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _loads(body) if with_layout else (json.loads(body), None)
    finally:
        if collecting:
            gc.enable()


def _loads(body: bytes) -> tuple[Any, Layout | None]:
    try:
        text = body.decode("utf-8")
        start = _skip(text, 0)
        if text.startswith("{", start):
            layout = Layout(text)
            value, end = members(text, start, layout)
            if _skip(text, end) == len(text):
                return value, layout
    except (ValueError, RecursionError):
        pass
    return json.loads(body), None
