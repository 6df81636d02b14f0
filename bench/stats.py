"""Summaries of samples: percentiles and ratios, as the report prints them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100): always a value that was observed, so
    a p99 of fewer than 100 samples is their maximum rather than an extrapolation."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is not positive."""
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


@dataclass(frozen=True)
class Summary:
    """All of one target's batches in one scenario."""

    p50: float
    p99: float
    samples: int
    rate: float  # requests per second of wall time
    first_byte_p50: float | None = None  # when the scenario timed first bytes too
    first_byte_p99: float | None = None
    cpu_ms_per_request: float | None = None  # the target's processes' CPU time / requests


def summarize(
    samples_ms: Sequence[float],
    requests: int,
    seconds: float,
    first_byte_ms: Sequence[float] = (),
    cpu_seconds: float | None = None,
) -> Summary:
    return Summary(
        percentile(samples_ms, 50),
        percentile(samples_ms, 99),
        len(samples_ms),
        requests / seconds if seconds > 0 else 0.0,
        percentile(first_byte_ms, 50) if first_byte_ms else None,
        percentile(first_byte_ms, 99) if first_byte_ms else None,
        cpu_seconds * 1000 / requests if cpu_seconds is not None and requests else None,
    )
