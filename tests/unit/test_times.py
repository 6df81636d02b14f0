"""ISO 8601 times in and out (relay.times)."""

from __future__ import annotations

import pytest

from relay import times


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-12-31T23:59:59Z", "2026-12-31T23:59:59Z"),
        ("2026-12-31T23:59:59z", "2026-12-31T23:59:59Z"),
        ("2026-12-31T23:59:59.750+00:00", "2026-12-31T23:59:59Z"),
        ("2027-01-01T01:00:00+02:00", "2026-12-31T23:00:00Z"),
        ("2026-12-31T23:59", "2026-12-31T23:59:00Z"),  # no offset: UTC
        ("2026-12-31", "2026-12-31T00:00:00Z"),
    ],
)
def test_iso_times_are_read_in_utc(text, expected):
    assert times.iso(times.parse_time(text)) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "31/12/2026", "2026-13-01"])
def test_other_times_are_refused(text):
    with pytest.raises(ValueError):
        times.parse_time(text)


def test_a_time_with_a_year_out_of_range_is_refused_not_a_crash():
    with pytest.raises((ValueError, OverflowError, OSError)):
        times.iso(times.parse_time("9999-12-31T23:59:59+00:00") + 86400)
