"""IMAP date-time: RFC 9051 §9 spelling out, strict parsing in, and a lossless round trip."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.imap.dates import format_date_time, parse_date_time
from adapters.imap.tokens import ParseError


def test_the_rfc_spelling() -> None:
    zone = dt.timezone(dt.timedelta(hours=-7))
    assert format_date_time(dt.datetime(1994, 7, 17, 10, 52, 37, tzinfo=zone)) == "17-Jul-1994 10:52:37 -0700"
    utc = dt.datetime(2026, 11, 7, 5, 4, 3, tzinfo=dt.UTC)
    assert format_date_time(utc) == " 7-Nov-2026 05:04:03 +0000"
    assert parse_date_time(" 7-nov-2026 05:04:03 +0530") == dt.datetime(
        2026, 11, 7, 5, 4, 3, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))


@pytest.mark.parametrize("text", ["7-Nov-2026 05:04:03 +0000", "31-Feb-2026 00:00:00 +0000",
                                  "01-Foo-2026 00:00:00 +0000", "01-Nov-2026 24:00:00 +0000",
                                  "01-Nov-2026 00:00:00 +2400", "01-Nov-2026 00:00:00 +0060",
                                  "01-Nov-2026 00:00:00", "01-Nov-2026 00:00:00 +0000 "])
def test_dates_outside_the_grammar_are_refused(text: str) -> None:
    with pytest.raises(ParseError):
        parse_date_time(text)


@given(st.datetimes(min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)),
       st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
def test_any_moment_round_trips(moment: dt.datetime, offset_minutes: int) -> None:
    aware = moment.replace(microsecond=0, tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))
    assert parse_date_time(format_date_time(aware)) == aware
