"""Prices as data (prices.json, RELAY_PRICES) and costs as exact nano-dollars."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from relay.usage import pricing

SONNET = {"input_tokens": 102, "output_tokens": 100}
COUNT_NAMES = (
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_creation_1h_tokens",
    "cache_read_tokens",
)


def test_a_cost_is_whole_nano_dollars_without_float_noise():
    # (102 * 3 + 100 * 15) / 1e6 in floats is 0.0018060000000000003, seen in a row.
    nanos, saved = pricing.cost(pricing.price_of("claude-sonnet-4-5"), SONNET)
    assert (nanos, saved) == (1_806_000, 0)
    assert repr(pricing.usd(nanos)) == "0.001806" and pricing.usd_text(nanos) == "0.001806000"


def test_fractions_of_a_nano_dollar_round_once_per_request_half_to_even():
    # $0.0005 per million tokens is half a nano-dollar a token.
    [(_, price)] = pricing.parse_overrides('{"tiny": {"input": 0.0005, "output": 0.0015}}')
    assert pricing.cost(price, {"input_tokens": 1})[0] == 0  # 0.5 -> 0
    assert pricing.cost(price, {"input_tokens": 3})[0] == 2  # 1.5 -> 2
    assert pricing.cost(price, {"input_tokens": 2, "output_tokens": 1})[0] == 2  # 1 + 1.5 = 2.5 -> 2, not 1 + 2


def test_cost_and_savings_are_the_exact_sums_rounded_half_to_even():
    # The definition, in Fractions, against pricing.cost's integer arithmetic over prices
    # of several decimal places, cache fields given and defaulted, and savings below zero.
    table = pricing.parse_overrides(
        '{"a": {"input": 3, "output": 15}, "b": {"input": 0.0007, "output": 0.011, "cache_read": 0.00003},'
        ' "c": {"input": 1.25, "output": 2, "cache_write_5m": 7.125, "cache_write_1h": 0.3}}'
    )
    counts_tried = [
        {"input_tokens": 1},
        {"input_tokens": 7, "output_tokens": 3, "cache_read_tokens": 11},
        {"input_tokens": 5, "cache_creation_tokens": 9, "cache_creation_1h_tokens": 4, "cache_read_tokens": 1},
        {"output_tokens": 1, "cache_creation_tokens": 3, "cache_creation_1h_tokens": 8},
        {"input_tokens": 123_457, "output_tokens": 9_999, "cache_creation_tokens": 77_777, "cache_read_tokens": 1},
    ]
    for _, price in table:
        for counts in counts_tried:
            n = {name: counts.get(name, 0) for name in COUNT_NAMES}
            written_1h = min(n["cache_creation_tokens"], n["cache_creation_1h_tokens"])
            written_5m = n["cache_creation_tokens"] - written_1h
            total = (
                n["input_tokens"] * price.input
                + n["output_tokens"] * price.output
                + written_5m * price.cache_write_5m
                + written_1h * price.cache_write_1h
                + n["cache_read_tokens"] * price.cache_read
            )
            savings = (
                n["cache_read_tokens"] * (price.input - price.cache_read)
                - written_5m * (price.cache_write_5m - price.input)
                - written_1h * (price.cache_write_1h - price.input)
            )
            per_token = Fraction(pricing.NANO, 10**6)
            assert pricing.cost(price, counts) == (round(total * per_token), round(savings * per_token)), counts


def test_claude_codes_default_models_have_the_prices_of_its_own_cost_report():
    """Claude Code 2.1.331's catalog: opus-5-5 (its default) $4/$20 with reads at $0.20,
    sonnet-5-5 $2/$10 with reads at $0.10; neither was priced so before."""
    opus = pricing.price_of("claude-opus-5-5")
    assert (opus.input, opus.output, opus.cache_write_5m, opus.cache_write_1h, opus.cache_read) == tuple(
        map(Fraction, ("4", "20", "5", "8", "0.2"))
    )
    sonnet = pricing.price_of("claude-sonnet-5-5-20261101")
    assert (sonnet.input, sonnet.output, sonnet.cache_read) == tuple(map(Fraction, ("2", "10", "0.1")))
    assert pricing.price_of("claude-opus-5").input == 5  # the general glob still serves opus-5
    for model in ("claude-haiku-5-5", "claude-fable-5-2", "claude-mythos-5-2", "claude-sonnet-4-6"):
        assert pricing.price_of(model) is not None, model


def test_a_long_prompt_is_priced_at_its_own_rate():
    price = pricing.price_of("claude-haiku-5-5")
    short = pricing.cost(price, {"input_tokens": 100_000, "output_tokens": 10})[0]
    long = pricing.cost(price, {"input_tokens": 90_000, "cache_read_tokens": 10_001, "output_tokens": 10})[0]
    assert short == 100_000 * 100 + 10 * 500
    assert long == 90_000 * 500 + 10_001 * 50 + 10 * 2500


def test_the_bundled_file_says_where_its_prices_come_from():
    document = json.loads(pricing.BUNDLED_FILE.read_text())
    assert document["unit"] == "USD per 1,000,000 tokens"
    assert all(source["source"] and source["read_on"] for source in document["sources"])
    assert len(pricing.BUNDLED) == len(document["models"])


def test_overrides_come_first_and_are_exact():
    overrides = pricing.parse_overrides('{"claude-opus-5-5*": {"input": 0.1, "output": 0.3}}')
    price = pricing.price_of("claude-opus-5-5", overrides)
    assert price.input == Fraction(1, 10) and price.cache_read == Fraction(1, 100)
    assert pricing.cost(price, {"input_tokens": 3, "output_tokens": 1})[0] == 600


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1]", "must be a JSON object"),
        ('{"m": {"input": 1}}', "needs input and output"),
        ('{"m": {"input": -1, "output": 1}}', "non-negative"),
        ('{"m": {"input": true, "output": 1}}', "non-negative"),
        ('{"m": {"input": NaN, "output": 1}}', "NaN is not a price"),
        ('{"m": {"input": 1, "output": 1, "cost": 2}}', "only"),
        ('{"m": {"input": 1, "output": 1, "long_prompt": {"input": 1, "output": 1}}}', "above_prompt_tokens"),
    ],
)
def test_bad_overrides_say_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        pricing.parse_overrides(text)
