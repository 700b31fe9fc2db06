"""Numbers as the table prints them."""

from __future__ import annotations

import pytest

from pytest_keisei_perf.report import format_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1.234, "1.23 s"),
        (0.9996, "1 s"),  # rounds up into the next unit, not "1e+03 ms"
        (0.0009996, "1 ms"),
        (0.01234, "12.3 ms"),
        (2.5e-5, "25 us"),
        (9.9996e-7, "1 us"),
        (3e-8, "30 ns"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_durations_have_three_significant_digits_in_the_right_unit(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
