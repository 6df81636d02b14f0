"""What a request cost, from its token counts and a price table per model.

Prices are US dollars per million tokens, matched by model glob, first match wins (so
the table lists specific names before general ones). Sources: Anthropic's and OpenAI's
published price pages, read 2026-11. `RELAY_PRICES` (JSON, same shape) is consulted
before the built-in table, so a team can correct or add a price without a release; its
`<provider>/<model glob>` entries price what that provider serves (a cloud region's rate).
A model no entry matches is priced None (recorded as NULL), never 0.

Anthropic reports input, cache-write and cache-read tokens separately; usage.py turns
OpenAI's figures into the same shape (prompt tokens less cached ones), so one formula
serves both.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from relay.http.json_spans import unknown_fields


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


def _anthropic(input: float, output: float) -> Price:
    """Anthropic's cache rates are fixed multiples of the input price."""
    return Price(input, output, input * 1.25, input * 2, input * 0.1)


def _openai(input: float, output: float, cached: float) -> Price:
    """OpenAI caches automatically: no write premium, a discounted read."""
    return Price(input, output, input, input, cached)


BUILT_IN: Prices = (
    ("claude-fable-5-1*", Price(10, 50, 12.5, 20, 0.25)),
    ("claude-mythos-5-1*", Price(10, 50, 12.5, 20, 0.25)),
    ("claude-fable-5*", _anthropic(10, 50)),
    ("claude-mythos-5*", _anthropic(10, 50)),
    ("claude-opus-5*", _anthropic(5, 25)),
    ("claude-opus-4-[5678]*", _anthropic(5, 25)),
    ("claude-opus-4*", _anthropic(15, 75)),
    ("claude-3-opus*", _anthropic(15, 75)),
    ("claude-sonnet-4*", _anthropic(3, 15)),
    ("claude-3-7-sonnet*", _anthropic(3, 15)),
    ("claude-3-5-sonnet*", _anthropic(3, 15)),
    ("claude-haiku-4*", _anthropic(1, 5)),
    ("claude-3-5-haiku*", _anthropic(0.8, 4)),
    ("claude-3-haiku*", _anthropic(0.25, 1.25)),
    ("gpt-4o-mini*", _openai(0.15, 0.6, 0.075)),
    ("gpt-4o*", _openai(2.5, 10, 1.25)),
    ("gpt-4.1-nano*", _openai(0.1, 0.4, 0.025)),
    ("gpt-4.1-mini*", _openai(0.4, 1.6, 0.1)),
    ("gpt-4.1*", _openai(2, 8, 0.5)),
    ("gpt-5-nano*", _openai(0.05, 0.4, 0.005)),
    ("gpt-5-mini*", _openai(0.25, 2, 0.025)),
    ("gpt-5*", _openai(1.25, 10, 0.125)),
    ("text-embedding-3-small*", _openai(0.02, 0, 0.02)),
    ("text-embedding-3-large*", _openai(0.13, 0, 0.13)),
    ("text-embedding-ada-002*", _openai(0.1, 0, 0.1)),
)

_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")

# (model glob, its price) pairs, the first match winning: RELAY_PRICES's, then BUILT_IN.
Prices = tuple[tuple[str, Price], ...]


def parse_overrides(text: str | None) -> Prices:
    """RELAY_PRICES: {"<model glob>": {"input": 3, "output": 15, ...}, ...}. The cache
    fields default to Anthropic's multiples of `input`. Raises ValueError with a
    message that names the problem."""
    if not text or not text.strip():
        return ()
    table = json.loads(text)
    if not isinstance(table, dict):
        raise ValueError("must be a JSON object of model glob -> prices")
    entries = []
    for glob, fields in table.items():
        if not isinstance(fields, dict) or unknown_fields(fields, _FIELDS) is not None:
            raise ValueError(f"{glob!r} must map to an object with only {', '.join(_FIELDS)}")
        values: dict[str, float | None] = {name: fields.get(name) for name in _FIELDS}
        if (
            any(
                v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0)
                for v in values.values()
            )
            or values["input"] is None
            or values["output"] is None
        ):
            raise ValueError(f"{glob!r} needs non-negative numbers, input and output at least")
        base = _anthropic(values["input"], values["output"])
        given = {name: value for name, value in values.items() if value is not None}
        entries.append((glob, dataclasses.replace(base, **given)))
    return tuple(entries)


@functools.lru_cache(maxsize=256)  # per isolate: few models, and every audit row asks
def price_of(model: str | None, overrides: Prices = (), provider: str | None = None) -> Price | None:
    """The price of `model`; served by `provider`, an override for `<provider>/<model glob>`
    comes first (a cloud's regional endpoint may charge more than the model's list price)."""
    if not model:
        return None
    if provider:
        for glob, price in overrides:
            if "/" in glob and fnmatch.fnmatchcase(f"{provider}/{model}", glob):
                return price
    for glob, price in overrides + BUILT_IN:
        if fnmatch.fnmatchcase(model, glob):
            return price
    return None


def _tokens(counts: Mapping[str, int | None], name: str) -> int:
    return counts.get(name) or 0


def cost(price: Price | None, counts: Mapping[str, int | None]) -> tuple[float | None, float | None]:
    """(cost, cache savings) in dollars; savings are what cache reads saved against the
    full input price, less what cache writes cost above it. (None, None) unpriced."""
    if price is None:
        return None, None
    written = _tokens(counts, "cache_creation_tokens")
    written_1h = min(written, _tokens(counts, "cache_creation_1h_tokens"))
    read = _tokens(counts, "cache_read_tokens")
    total = (
        _tokens(counts, "input_tokens") * price.input
        + _tokens(counts, "output_tokens") * price.output
        + (written - written_1h) * price.cache_write_5m
        + written_1h * price.cache_write_1h
        + read * price.cache_read
    )
    savings = (
        read * (price.input - price.cache_read)
        - (written - written_1h) * (price.cache_write_5m - price.input)
        - written_1h * (price.cache_write_1h - price.input)
    )
    return total / 1e6, savings / 1e6
