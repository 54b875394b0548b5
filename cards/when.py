"""Dates and times as shown on cards, in the time zone of the `now` the caller passes."""

from __future__ import annotations

from datetime import date, datetime

from cards.labels import Lang, label


def local(moment: datetime, now: datetime) -> datetime:
    """`moment` in the time zone of `now` (naive datetimes are taken as already local)."""
    if moment.tzinfo is None or now.tzinfo is None:
        return moment
    return moment.astimezone(now.tzinfo)


def fmt_time(moment: datetime, now: datetime) -> str:
    """`YYYY-MM-DD HH:MM` in the viewer's zone."""
    return local(moment, now).strftime("%Y-%m-%d %H:%M")


def fmt_date(day: date) -> str:
    return day.isoformat()


def days_until(day: date, now: datetime) -> int:
    """Whole calendar days from today (in `now`'s zone) to `day`; negative once past."""
    return (day - now.date()).days


def expiry_note(expires_at: datetime, now: datetime, lang: Lang) -> str:
    """'expires in 3 days' close to the date, the date itself further out, 'expired' once past."""
    if expires_at <= now:
        return label("expired", lang)
    days = days_until(local(expires_at, now).date(), now)
    if days == 0:
        return label("expires_today", lang)
    if days <= 14:
        return label("expires_in", lang, n=days)
    return label("expires_on", lang, date=fmt_date(local(expires_at, now).date()))


NEAR_DAYS = 14


def near_expiry_note(expires_at: datetime | None, now: datetime, lang: Lang, days: int = NEAR_DAYS) -> str | None:
    """The expiry note when the tag expires within `days` (or has expired); None when it is further out."""
    if expires_at is None:
        return None
    if expires_at > now and days_until(local(expires_at, now).date(), now) > days:
        return None
    return expiry_note(expires_at, now, lang)


def fmt_day(day: date) -> str:
    """The date for cards, with non-breaking hyphens so a line never breaks inside it."""
    return day.isoformat().replace("-", "\u2011")
