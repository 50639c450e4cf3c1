"""Dates and times as other apps write them, turned into what the app stores.

Exports carry dates in many shapes (ISO with `Z` or `+0000`, US long form, spreadsheet
`M/D/YY`, JS `Date.toString()`, epoch milliseconds). One tolerant reader here gives every
parser the same rules: timestamps end up as UTC with millisecond precision (the app's
precision), calendar dates stay the day the user saw, and a date-only moment (a check-in
"on 2024-03-01") is placed at 12:00 UTC, which falls on that same calendar day in every
time zone from UTC-11 to UTC+11.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.UTC
DATE_ONLY_HOUR = 12

MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        ("january", "jan"),
        ("february", "feb"),
        ("march", "mar"),
        ("april", "apr"),
        ("may",),
        ("june", "jun"),
        ("july", "jul"),
        ("august", "aug"),
        ("september", "sep", "sept"),
        ("october", "oct"),
        ("november", "nov"),
        ("december", "dec"),
    ),
    start=1,
):
    for _name in _names:
        MONTHS[_name] = _number

_ZONE = r"(?P<zone>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?|(?:GMT|UTC)[+-]\d{1,2}(?::?\d{2})?)"
_TIME = (
    r"(?P<H>\d{1,2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d{1,9}))?)?)?"
    r"\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?)?"
)
_ISO_RE = re.compile(
    r"^(?P<y>\d{4})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})"
    rf"(?:(?:T|\s+)(?P<H>\d{{1,2}}):(?P<M>\d{{2}})(?::(?P<S>\d{{2}})(?:[.,](?P<F>\d{{1,9}}))?)?)?"
    rf"\s*{_ZONE}?$"
)
_NUMERIC_RE = re.compile(
    r"^(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})\.?"
    rf"(?:(?:\s+|T|,\s*){_TIME})?\s*{_ZONE}?$"
)
_WEEKDAY = r"(?:(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)[a-z]*\.?,?\s+)?"
_TAIL = rf"(?:(?:\s+|,\s*|\s+at\s+){_TIME})?(?:\s*\(?{_ZONE}\)?)?(?:\s*\([^)]*\))?"
_MONTH_FIRST_RE = re.compile(
    rf"^{_WEEKDAY}(?P<mon>[a-z]{{3,9}})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?"
    rf"(?:\s+(?P<y>\d{{4}}))?{_TAIL}$",
    re.IGNORECASE,
)
_DAY_FIRST_RE = re.compile(
    rf"^{_WEEKDAY}(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\.?\s+(?P<mon>[a-z]{{3,9}})\.?,?"
    rf"(?:\s+(?P<y>\d{{4}}))?{_TAIL}$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class When:
    """A date, maybe with a time of day, maybe with a zone, as written in a file."""

    year: int | None
    month: int
    day: int
    time: dt.time | None = None
    tz: dt.tzinfo | None = None

    def date(self, year: int | None = None) -> dt.date:
        resolved = self.year if self.year is not None else year
        assert resolved is not None, "a date written without its year needs the year it is in"
        return dt.date(resolved, self.month, self.day)


def truncate_to_ms(value: dt.datetime) -> dt.datetime:
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def zone(name: str | None) -> dt.tzinfo | None:
    """The IANA zone of that name, or None when it is empty or unknown."""
    if not name or not name.strip():
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: `Europe/` is a folder
        return None


def _offset(text: str | None) -> dt.tzinfo | None:
    if not text:
        return None
    text = text.upper()
    if text in ("Z", "UTC", "GMT"):
        return UTC
    if text.startswith(("UTC", "GMT")):
        text = text[3:]
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    if len(digits) <= 2:
        hours, minutes = int(digits), 0
    else:
        hours, minutes = int(digits[:-2]), int(digits[-2:])
    if hours > 23 or minutes > 59:
        return None
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _time(match: re.Match[str]) -> dt.time | None:
    hour = match.group("H")
    if hour is None:
        return None
    minute = match.group("M")
    ampm = match.groupdict().get("ampm")
    if minute is None and ampm is None:
        return None
    h = int(hour)
    if ampm:
        if not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if ampm.lower().startswith("p") else 0)
    fraction = (match.group("F") or "")[:6].ljust(6, "0")
    return dt.time(h, int(minute or 0), int(match.group("S") or 0), int(fraction))


def _full_year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 69 else 1900
    return year


@lru_cache(maxsize=8192)
def parse_when(text: str, *, day_first: bool = False) -> When | None:
    """Read a date or date-time in any of the shapes exports use; None if it is none of them.

    Numeric `a/b/y` and `a-b-y` dates are month first (as US apps and spreadsheets write
    them) unless `day_first` or the first number cannot be a month; `a.b.y` is day first.
    """
    text = text.strip().lstrip("@").strip()
    if not text:
        return None
    try:
        match = _ISO_RE.match(text)
        if match:
            return _when(
                int(match["y"]), int(match["m"]), int(match["d"]), match, _offset(match["zone"])
            )
        match = _NUMERIC_RE.match(text)
        if match:
            a, b = int(match["a"]), int(match["b"])
            if match["sep"] == "." or day_first or a > 12:
                a, b = b, a
            return _when(_full_year(match["y"]), a, b, match, _offset(match["zone"]))
        for pattern in (_MONTH_FIRST_RE, _DAY_FIRST_RE):
            match = pattern.match(text)
            if match and match["mon"].lower() in MONTHS:
                year = int(match["y"]) if match["y"] else None
                return _when(
                    year,
                    MONTHS[match["mon"].lower()],
                    int(match["d"]),
                    match,
                    _offset(match["zone"]),
                )
    except ValueError:
        return None
    return None


def _when(
    year: int | None, month: int, day: int, match: re.Match[str], tz: dt.tzinfo | None
) -> When | None:
    dt.date(year if year is not None else 2000, month, day)  # raises ValueError if impossible
    return When(year, month, day, _time(match), tz)


def when_to_utc(when: When, *, assume_tz: dt.tzinfo | None = None) -> dt.datetime:
    """The instant, in UTC to the millisecond; a zone-less time is read in `assume_tz`."""
    if when.time is None:
        return dt.datetime.combine(when.date(), dt.time(DATE_ONLY_HOUR), tzinfo=UTC)
    moment = dt.datetime.combine(when.date(), when.time, tzinfo=when.tz or assume_tz or UTC)
    return truncate_to_ms(moment.astimezone(UTC))


def when_to_local_date(when: When, *, local_tz: dt.tzinfo | None = None) -> dt.date:
    """The calendar day the user saw: a moment with a zone is moved into `local_tz` first."""
    if when.time is not None and when.tz is not None and local_tz is not None:
        moment = dt.datetime.combine(when.date(), when.time, tzinfo=when.tz)
        return moment.astimezone(local_tz).date()
    return when.date()


def parse_timestamp(text: str | None, *, assume_tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """A UTC millisecond timestamp from any supported shape, or None if empty/unreadable."""
    if not text:
        return None
    when = parse_when(text)
    if when is None or when.year is None:
        return None
    return when_to_utc(when, assume_tz=assume_tz)


def parse_date(text: str | None, *, local_tz: dt.tzinfo | None = None) -> dt.date | None:
    if not text:
        return None
    when = parse_when(text)
    if when is None or when.year is None:
        return None
    return when_to_local_date(when, local_tz=local_tz)


def from_epoch_ms(value: float | int) -> dt.datetime | None:
    """The instant of a JS timestamp, or None when it is not one (out of range)."""
    try:
        return truncate_to_ms(dt.datetime.fromtimestamp(value / 1000, tz=UTC))
    except (OverflowError, OSError, ValueError):
        return None


def date_at_noon_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(DATE_ONLY_HOUR), tzinfo=UTC)


def iso_utc(value: dt.datetime | None) -> str | None:
    """`2024-03-01T08:30:00.250Z`: how extras keep a timestamp."""
    if value is None:
        return None
    value = truncate_to_ms(value.astimezone(UTC))
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
