"""The exact strings the pages show for numbers, percentages, times, intervals, durations."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from core.agreement.bootstrap import ConfidenceInterval
from core.views.formatting import (
    MISSING,
    duration,
    interval,
    number,
    percent,
    preview_text,
    when,
    when_ms,
)

# 2026-12-01 08:15:42 UTC
TS = 1796112942.0


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (None, {}, "n/a"),
        (math.nan, {}, "n/a"),
        (0, {}, "0.00"),
        (0.0, {}, "0.00"),
        (1, {}, "1.00"),
        (-0.15, {}, "-0.15"),
        (0.6875, {}, "0.69"),
        (0.6875, {"digits": 3}, "0.688"),
        (None, {"missing": ""}, ""),
        (math.nan, {"missing": "-"}, "-"),
        (0.5, {"missing": "-", "digits": 3}, "0.500"),
    ],
)
def test_number_shows_fixed_decimals_and_marks_missing(value, kwargs, expected):
    assert number(value, **kwargs) == expected


def test_missing_mark_is_n_a():
    assert MISSING == "n/a"


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (None, {}, "n/a"),
        (math.nan, {}, "n/a"),
        (0, {}, "0%"),
        (1, {}, "100%"),
        (0.834, {}, "83%"),
        (0.834, {"digits": 1}, "83.4%"),
        (None, {"missing": ""}, ""),
    ],
)
def test_percent_shows_a_fraction_as_a_percentage(value, kwargs, expected):
    assert percent(value, **kwargs) == expected


def test_when_in_utc_to_the_minute_or_second():
    assert when(TS, utc=True) == "2026-12-01 08:15"
    assert when(TS, utc=True, seconds=True) == "2026-12-01 08:15:42"
    assert when(0, utc=True) == "1970-01-01 00:00"


def test_when_defaults_to_the_servers_local_time():
    local = datetime.fromtimestamp(TS)
    assert when(TS) == local.strftime("%Y-%m-%d %H:%M")
    assert when(TS, seconds=True) == local.strftime("%Y-%m-%d %H:%M:%S")


def test_when_unknown_is_empty():
    assert when(None) == ""
    assert when(None, seconds=True, utc=True) == ""


def test_when_ms_reads_mlflow_milliseconds_and_zero_as_unset():
    assert when_ms(int(TS * 1000), utc=True) == "2026-12-01 08:15"
    assert when_ms(int(TS * 1000) + 999, utc=True, seconds=True) == "2026-12-01 08:15:42"
    assert when_ms(None) == ""
    assert when_ms(0) == ""


@pytest.mark.parametrize(
    ("ci", "kwargs", "expected"),
    [
        (None, {}, ""),
        ((0.61, 0.834), {}, "95% CI 0.61 to 0.83"),
        ((0, 1), {}, "95% CI 0.00 to 1.00"),
        ((-0.2, 0.4), {"label": False}, "-0.20 to 0.40"),
        ((0.61, 0.834), {"digits": 3}, "95% CI 0.610 to 0.834"),
        ((None, 0.5), {}, ""),
        ((0.5, None), {"label": False}, ""),
    ],
)
def test_interval_from_a_pair(ci, kwargs, expected):
    assert interval(ci, **kwargs) == expected


def test_interval_from_a_bootstrap_confidence_interval():
    ci = ConfidenceInterval(
        estimate=0.7, low=0.55, high=0.85, level=0.95, n_resamples=1000, n_undefined=0
    )
    assert interval(ci) == "95% CI 0.55 to 0.85"
    assert interval(ci, label=False) == "0.55 to 0.85"
    undefined = ConfidenceInterval(
        estimate=None, low=None, high=None, level=0.95, n_resamples=0, n_undefined=0
    )
    assert interval(undefined) == ""


@pytest.mark.parametrize(
    ("seconds", "kwargs", "expected"),
    [
        (0, {}, "0.0 s"),
        (1, {}, "1.0 s"),
        (12.34, {}, "12.3 s"),
        (12.6, {"digits": 0}, "13 s"),
        (0, {"approx": True}, "< 1 s"),
        (0.99, {"approx": True}, "< 1 s"),
        (1, {"approx": True}, "~1 s"),
        (1234.4, {"approx": True}, "~1,234 s"),
    ],
)
def test_duration_measured_and_estimated(seconds, kwargs, expected):
    assert duration(seconds, **kwargs) == expected


@pytest.mark.parametrize(
    ("preview", "expected"),
    [
        ('{"response": "Yes, within 30 days."}', "Yes, within 30 days."),
        # MLflow cuts long previews mid-string: the text still reads, escapes undone.
        ('{"response": "It is \\"soft\\",\\nand warm', 'It is "soft",\nand warm'),
        ('"just a string"', "just a string"),
        ("Where is my order?", "Where is my order?"),
        ('{"question": "a", "context": "b"}', '{"question": "a", "context": "b"}'),
        ('{"n": 3}', '{"n": 3}'),
        ("{not json", "{not json"),
        (None, ""),
    ],
)
def test_preview_text_unwraps_a_one_field_json_preview(preview, expected):
    assert preview_text(preview) == expected
