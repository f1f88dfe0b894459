"""The pure grammar of core/query.py: the forms no single face's tests reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.query import parse_tag, parse_text, parse_when

NOW = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def test_month_and_day_bounds() -> None:
    assert parse_when("2026-12") == datetime(2026, 12, 1, tzinfo=UTC)
    end = parse_when("2026-12", end=True)
    assert end == datetime(2027, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
    assert parse_when("2024-02", end=True).day == 29
    assert parse_when("yesterday", end=True, now=NOW) == datetime(2026, 12, 1, tzinfo=UTC) - (
        timedelta(microseconds=1)
    )
    assert parse_when("today", now=NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_when("now", now=NOW) == NOW


def test_relative_forms() -> None:
    assert parse_when("30 min ago", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_when("1.5h", now=NOW) == NOW - timedelta(minutes=90)
    assert parse_when("90s", now=NOW) == NOW - timedelta(seconds=90)
    assert parse_when("2W", now=NOW) == NOW - timedelta(weeks=2)


@pytest.mark.parametrize(
    "bad",
    ["2026-13", "2026-00", "2026-02-30", "last tuesday", "7y", "", "99999999d", "9" * 30 + "w"],
)
def test_bad_times_are_one_readable_error(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid date"):
        parse_when(bad)


def test_tags_and_bar_errors() -> None:
    assert parse_tag("env") == ("env", None)
    assert parse_tag("env=") == ("env", "")
    assert parse_tag("k=a=b") == ("k", "a=b")
    with pytest.raises(ValueError):
        parse_tag("=prod")
    query, errors = parse_text("tag:=x since:soon type:full", NOW)
    assert len(errors) == 2 and query.types and not query.tags and query.since is None
