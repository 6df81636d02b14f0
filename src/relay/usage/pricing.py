"""What a request cost, from its token counts and a price table per model.

Prices are data: prices.json (bundled, with its sources and the date they were read)
lists US dollars per million tokens by model glob, first match wins (so it lists specific
names before general ones). `RELAY_PRICES` (JSON, {"<glob>": {...}}) is consulted before
it, so a team can correct or add a price without a release; its `<provider>/<model glob>`
entries price what that provider serves (a cloud region's rate). A model no entry matches is
priced None (recorded as NULL and counted as unpriced), never 0.

Money is exact: prices are read as decimals (never floats) and a cost is a whole number
of nano-dollars (1e-9 USD), rounded once per request, half to even. So a row's cost has
no float noise and sums of rows are exact integers.

Anthropic reports input, cache-write and cache-read tokens separately; meter.py turns
OpenAI's figures into the same shape (prompt tokens less cached ones), so one formula
serves both.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from relay.http.json_spans import unknown_fields

NANO = 10**9
# Nano-dollars per token for a price of one dollar per million tokens.
_NANOS_PER_TOKEN = NANO // 10**6
_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
BUNDLED_FILE = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens, exact. `long_prompt`: the price of a request whose prompt
    (input, cache reads and writes) exceeds `long_prompt_above` tokens, when the model has one."""

    input: Fraction
    output: Fraction
    cache_write_5m: Fraction
    cache_write_1h: Fraction
    cache_read: Fraction
    long_prompt: Price | None = None
    long_prompt_above: int | None = None
    # (d, input, output, cache_write_5m, cache_write_1h, cache_read): the five prices as
    # whole numbers of 1/d dollars per million tokens. `cost` sums token counts times these
    # integers, exact as Fractions would be but without a Fraction operation per term
    # (pure Python, and every audit row asks).
    scaled: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prices = (self.input, self.output, self.cache_write_5m, self.cache_write_1h, self.cache_read)
        d = math.lcm(*(price.denominator for price in prices))
        object.__setattr__(self, "scaled", (d, *(price.numerator * (d // price.denominator) for price in prices)))


def _number(value: Any, where: str) -> Fraction:
    valid = isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite())
    if isinstance(value, bool) or not valid or value < 0:
        raise ValueError(f"{where} must be a non-negative number")
    return Fraction(value)


def _price(fields: Any, where: str, nested: bool = False) -> Price:
    """One entry's prices. The cache fields default to Anthropic's multiples of `input`
    (writes 1.25x for 5 minutes, 2x for an hour; reads 0.1x)."""
    allowed = set(_FIELDS) | ({"above_prompt_tokens"} if nested else {"long_prompt"})
    if not isinstance(fields, dict) or unknown_fields(fields, allowed) is not None:
        raise ValueError(f"{where} must be an object with only {', '.join(sorted(allowed))}")
    if fields.get("input") is None or fields.get("output") is None:
        raise ValueError(f"{where} needs input and output")
    base = _number(fields["input"], f"{where}.input")
    defaults = {"cache_write_5m": base * Fraction(5, 4), "cache_write_1h": base * 2, "cache_read": base / 10}
    values = {
        name: _number(fields[name], f"{where}.{name}") if fields.get(name) is not None else defaults[name]
        for name in _FIELDS
        if name != "input"
    }
    long_prompt, above = None, None
    if fields.get("long_prompt") is not None:
        long_prompt = _price(fields["long_prompt"], f"{where}.long_prompt", nested=True)
        above = fields["long_prompt"].get("above_prompt_tokens")
        if isinstance(above, bool) or not isinstance(above, int) or above < 1:
            raise ValueError(f"{where}.long_prompt.above_prompt_tokens must be a positive whole number")
    return Price(input=base, long_prompt=long_prompt, long_prompt_above=above, **values)


# (model glob, its price) pairs, the first match winning: RELAY_PRICES's, then BUNDLED.
Prices = tuple[tuple[str, Price], ...]


def _decimal_json(text: str) -> Any:
    """JSON with its numbers as exact decimals; NaN and Infinity refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a price")

    return json.loads(text, parse_float=Decimal, parse_constant=refuse)


def parse_overrides(text: str | None) -> Prices:
    """RELAY_PRICES: {"<model glob>": {"input": 3, "output": 15, ...}, ...}. Raises
    ValueError with a message that names the problem."""
    if not text or not text.strip():
        return ()
    table = _decimal_json(text)
    if not isinstance(table, dict):
        raise ValueError("must be a JSON object of model glob -> prices")
    return tuple((glob, _price(fields, repr(glob))) for glob, fields in table.items())


def parse_table(text: str) -> Prices:
    """A price file in prices.json's shape: {"models": [{"match": glob, ...prices}, ...], ...}."""
    document = _decimal_json(text)
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, list):
        raise ValueError('a price file needs "models", a list of entries')
    entries = []
    for n, entry in enumerate(models):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise ValueError(f'models[{n}] needs "match", a model glob')
        fields = {name: value for name, value in entry.items() if name != "match"}
        entries.append((entry["match"], _price(fields, f"models[{n}] ({entry['match']})")))
    return tuple(entries)


_BUNDLED_TEXT = BUNDLED_FILE.read_text(encoding="utf-8")
BUNDLED: Prices = parse_table(_BUNDLED_TEXT)
_SOURCES = json.loads(_BUNDLED_TEXT).get("sources", [])


def about(overrides: Prices = ()) -> dict[str, Any]:
    """Where the price table comes from, for /admin/status."""
    return {"bundled_models": len(BUNDLED), "sources": _SOURCES, "overrides": [glob for glob, _ in overrides]}


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
    for glob, price in overrides + BUNDLED:
        if fnmatch.fnmatchcase(model, glob):
            return price
    return None


def _tokens(counts: Mapping[str, int | None], name: str) -> int:
    return counts.get(name) or 0


def cost(price: Price | None, counts: Mapping[str, int | None]) -> tuple[int | None, int | None]:
    """(cost, cache savings) in whole nano-dollars; savings are what cache reads saved
    against the full input price, less what cache writes cost above it. (None, None)
    unpriced."""
    if price is None:
        return None, None
    written = _tokens(counts, "cache_creation_tokens")
    written_1h = min(written, _tokens(counts, "cache_creation_1h_tokens"))
    read = _tokens(counts, "cache_read_tokens")
    prompt = _tokens(counts, "input_tokens") + written + read
    if price.long_prompt is not None and price.long_prompt_above is not None and prompt > price.long_prompt_above:
        price = price.long_prompt
    d, input_, output, write_5m, write_1h, read_price = price.scaled
    written_5m = written - written_1h
    total = (
        _tokens(counts, "input_tokens") * input_
        + _tokens(counts, "output_tokens") * output
        + written_5m * write_5m
        + written_1h * write_1h
        + read * read_price
    )
    savings = read * (input_ - read_price) - written_5m * (write_5m - input_) - written_1h * (write_1h - input_)
    return _nanos(total, d), _nanos(savings, d)


def _nanos(amount: int, d: int) -> int:
    """`amount` token-prices of 1/d dollars per million tokens, in whole nano-dollars,
    rounded half to even (as round() does a Fraction)."""
    whole, rest = divmod(amount * _NANOS_PER_TOKEN, d)  # floor division: 0 <= rest < d
    return whole + (2 * rest > d or (2 * rest == d and whole % 2 == 1))


def usd(nanos: int | None) -> float | None:
    """Nano-dollars as a float of dollars: the double nearest the exact amount, which prints
    as that decimal (1806000 -> 0.001806), for JSON answers and the cost_usd column."""
    return None if nanos is None else nanos / NANO


def usd_text(nanos: int) -> str:
    """Nano-dollars as exact decimal text: 15000 -> "0.000015000", -250 -> "-0.000000250"."""
    sign = "-" if nanos < 0 else ""
    return f"{sign}{abs(nanos) // NANO}.{abs(nanos) % NANO:09d}"
