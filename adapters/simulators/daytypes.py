"""Which kind of day a Beijing date is: a workday, a weekend day or a public holiday.

Holidays are the statutory festivals on their traditional dates (lunar festivals from a table for
2024–2028), without the State Council's yearly make-up workdays (调休), which are announced each winter and
only shift a few days: close enough for visitor and traffic curves.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

DayType = Literal["workday", "weekend", "holiday"]

# Lunar New Year's Day (春节), Dragon Boat (端午) and Mid-Autumn (中秋) festival dates.
_SPRING_FESTIVAL = {
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
}
_DRAGON_BOAT = {
    2024: date(2024, 6, 10),
    2025: date(2025, 5, 31),
    2026: date(2026, 6, 19),
    2027: date(2027, 6, 9),
    2028: date(2028, 5, 28),
}
_MID_AUTUMN = {
    2024: date(2024, 9, 17),
    2025: date(2025, 10, 6),
    2026: date(2026, 9, 25),
    2027: date(2027, 9, 15),
    2028: date(2028, 10, 3),
}


def _span(first: date, days: int) -> set[date]:
    return {first + timedelta(days=i) for i in range(days)}


def holidays(year: int) -> set[date]:
    """Public holiday dates of a year (traditional dates; lunar ones only for the years in the table)."""
    days: set[date] = {date(year, 1, 1)}
    days |= _span(date(year, 4, 4), 3)  # Qingming, usually 4–6 April
    days |= _span(date(year, 5, 1), 5)  # Labour Day week
    days |= _span(date(year, 10, 1), 7)  # National Day golden week
    if year in _SPRING_FESTIVAL:
        days |= _span(_SPRING_FESTIVAL[year] - timedelta(days=1), 8)  # New Year's Eve through the 7th day
    if year in _DRAGON_BOAT:
        days.add(_DRAGON_BOAT[year])
    if year in _MID_AUTUMN:
        days.add(_MID_AUTUMN[year])
    return days


_CACHE: dict[int, frozenset[date]] = {}


def day_type(day: date) -> DayType:
    year_days = _CACHE.get(day.year)
    if year_days is None:
        year_days = frozenset(holidays(day.year))
        _CACHE[day.year] = year_days
    if day in year_days:
        return "holiday"
    if day.weekday() >= 5:
        return "weekend"
    return "workday"
