"""Durations of time-boxed actions: what `/idops … for <duration>`, the request form and the SOAR API
accept, the bounds (1 minute to 30 days), and how a duration is shown."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.approvals import InvalidRequest, duration_text, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1m", timedelta(minutes=1)),
        ("4h", timedelta(hours=4)),
        ("4H", timedelta(hours=4)),
        ("4 hours", timedelta(hours=4)),
        ("90min", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("30d", timedelta(days=30)),
        ("43200m", timedelta(days=30)),
        ("720h", timedelta(days=30)),
    ],
)
def test_accepted_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("0m", "out of range"),
        ("31d", "out of range"),
        ("721h", "out of range"),
        ("4x", "not a duration"),
        ("h4", "not a duration"),
        ("-4h", "not a duration"),
        ("4.5h", "not a duration"),
        ("", "not a duration"),
        ("9999999m", "not a duration"),
    ],
)
def test_refused_durations_say_why(text: str, said: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_duration(text)
    assert said in caught.value.message and caught.value.field == "duration"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(900, "15 min"), (4 * 3600, "4 h"), (5400, "1 h 30 min"), (3 * 86400, "3 d"), (86400 + 3600, "1 d 1 h")],
)
def test_durations_are_shown_as_people_say_them(seconds: int, shown: str) -> None:
    assert duration_text(seconds) == shown
