"""The bench's percentile and ratio: what the BENCHMARKS.md numbers are computed with."""

import pytest

from bench.stats import percentile, ratio


def test_percentiles_are_observed_samples_by_nearest_rank():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(samples, 50) == 3.0
    assert percentile(samples, 99) == 5.0  # fewer than 100 samples: p99 is the maximum
    assert percentile(samples, 1) == 1.0
    assert percentile(list(range(1, 201)), 99) == 198
    with pytest.raises(ValueError):
        percentile([], 50)


def test_ratio_is_missing_without_a_usable_reference():
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, None) is None and ratio(None, 2.0) is None and ratio(3.0, 0.0) is None
