"""Summaries of samples: percentiles and ratios, as the report prints them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100): always a value that was observed, so
    a p99 of fewer than 100 samples is their maximum rather than an extrapolation."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def ratio(value: Optional[float], reference: Optional[float]) -> Optional[float]:
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


def summarize(samples_ms: Sequence[float], requests: int, seconds: float) -> Summary:
    return Summary(percentile(samples_ms, 50), percentile(samples_ms, 99), len(samples_ms),
                   requests / seconds if seconds > 0 else 0.0)
