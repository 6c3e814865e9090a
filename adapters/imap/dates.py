"""IMAP date-time (RFC 9051 §9): ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` for INTERNALDATE and the
optional date of APPEND. Parsed strictly: a date the grammar does not allow is BAD, not
a guess."""

from __future__ import annotations

import datetime as dt
import re

from adapters.imap.tokens import ParseError

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_TIME = re.compile(
    r"^([ \d]\d)-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{4}) "
    r"(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z", re.IGNORECASE)


def format_date_time(moment: dt.datetime) -> str:
    """date-day-fixed (a space before a one-digit day), English month, numeric zone."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    offset = moment.utcoffset() or dt.timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    zone = f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
    return (f"{moment.day:2d}-{MONTHS[moment.month - 1]}-{moment.year:04d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} {zone}")


def parse_date_time(text: str) -> dt.datetime:
    match = _DATE_TIME.match(text)
    if match is None:
        raise ParseError(f"invalid date-time {text[:40]!r}")
    day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
    month_number = [m.upper() for m in MONTHS].index(month.upper()) + 1
    offset = dt.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
    if offset >= dt.timedelta(hours=24) or int(zone_minutes) > 59:
        raise ParseError(f"invalid zone in {text[:40]!r}")
    try:
        return dt.datetime(int(year), month_number, int(day.strip()), int(hour), int(minute), int(second),
                           tzinfo=dt.timezone(-offset if sign == "-" else offset))
    except ValueError:
        raise ParseError(f"invalid date-time {text[:40]!r}") from None
